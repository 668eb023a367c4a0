"""mTLS inside the mesh (issue 9 item 5): every service port requires a client certificate of the
mesh's CA, the peer's identity decides what it may call, service clients and Envoy accept only
the certificate of the service they meant to reach.

The shared `mesh` (started as `make up` does) runs over TLS; the wrong-SAN case runs its own
Envoy in front of a stand-in server presenting another service's certificate."""

from __future__ import annotations

import asyncio
import json
import ssl
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc
from makoto.tenant.v1 import directory_pb2, directory_pb2_grpc, tenant_pb2, tenant_pb2_grpc

from services.common import tls
from services.common.config import MeshSettings
from services.common.identity import Role
from services.mesh.envoy_config import write_config
from services.mesh.launcher import envoy_spec
from services.mesh.processes import Child
from services.tenant.server import build as build_tenant
from tests.mesh_fixture import RunningMesh
from tests.security.attacks import create_tenant
from tests.support import bearer, direct_channel, free_port, make_settings, running_server, tls_dir

pytestmark = pytest.mark.e2e  # the shared mesh; the in-process cases below need none

SERVICES = ("tenant", "storage", "llm", "metering")
HEALTH = health_pb2.HealthCheckRequest()


async def _health(channel: grpc.aio.Channel) -> grpc.aio.AioRpcError | None:
    try:
        await health_pb2_grpc.HealthStub(channel).Check(HEALTH, timeout=5)
    except grpc.aio.AioRpcError as err:
        return err
    return None


def _foreign_credentials(root: Path) -> grpc.ChannelCredentials:
    """Envoy's name, our CA's trust, but a certificate signed by another CA."""
    ca_key, ca_cert = tls.make_ca("not the MAKOTO CA")
    key, cert = tls.issue(ca_key, ca_cert, tls.ENVOY)
    tls.write_pair(root, "foreign", key, cert)
    return grpc.ssl_channel_credentials(
        root_certificates=(tls_dir() / "ca.pem").read_bytes(),
        private_key=(root / "foreign.key").read_bytes(),
        certificate_chain=(root / "foreign.pem").read_bytes(),
    )


async def test_every_service_port_refuses_clients_without_a_mesh_certificate(
    mesh: RunningMesh, tmp_path: Path
) -> None:
    ca = (tls_dir() / "ca.pem").read_bytes()
    no_cert = grpc.ssl_channel_credentials(root_certificates=ca)
    foreign = _foreign_credentials(tmp_path)
    for service in SERVICES:
        address = mesh.address(service)
        # The control: a mesh certificate gets through on the very same port.
        async with direct_channel(address, identity=tls.ENVOY) as channel:
            assert await _health(channel) is None, service
        for label, channel in (
            ("plaintext", grpc.aio.insecure_channel(address)),
            ("TLS without a client certificate", grpc.aio.secure_channel(address, no_cert)),
            ("a certificate of another CA", grpc.aio.secure_channel(address, foreign)),
        ):
            async with channel:
                err = await _health(channel)
            assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE, (service, label, err)


async def test_the_openai_listener_requires_a_mesh_client_certificate(
    mesh: RunningMesh, tmp_path: Path
) -> None:
    url = f"https://{mesh.settings.host}:{mesh.settings.llm_openai_port}/v1/models"
    with_cert = tls.client_ssl_context(MeshSettings(tls_dir=tls_dir()), tls.ENVOY)
    async with httpx.AsyncClient(verify=with_cert, timeout=10) as client:
        assert (await client.get(url)).status_code == 401  # TLS passed; no token
    without_cert = ssl.create_default_context(cafile=str(tls_dir() / "ca.pem"))
    async with httpx.AsyncClient(verify=without_cert, timeout=10) as client:
        with pytest.raises(httpx.TransportError):
            await client.get(url)
    async with httpx.AsyncClient(timeout=10) as client:  # plaintext HTTP on the TLS port
        with pytest.raises(httpx.TransportError):
            await client.get(url.replace("https://", "http://"))


async def test_envoy_and_operator_certificates_cannot_call_internal_methods(mesh: RunningMesh) -> None:
    """Even with a valid service token: the internal methods are for service peers only."""
    tenant = create_tenant(mesh, "mtls")
    service = mesh.metadata(Role.SERVICE)
    resolve = directory_pb2.ResolveTenantRequest(tenant_id=tenant)
    record = metering_pb2.RecordUsageRequest()
    for identity in (tls.ENVOY, tls.OPERATOR):
        async with direct_channel(mesh.address("tenant"), identity=identity) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await directory_pb2_grpc.TenantDirectoryServiceStub(channel).ResolveTenant(
                    resolve, metadata=service, timeout=10
                )
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "internal" in (caught.value.details() or "")
            # ... while the public methods of the same port are open to it (token rules apply).
            got = await tenant_pb2_grpc.TenantServiceStub(channel).GetTenant(
                tenant_pb2.GetTenantRequest(tenant_id=tenant),
                metadata=mesh.metadata(Role.TENANT_ADMIN, tenant),
                timeout=10,
            )
            assert got.tenant_id == tenant
        async with direct_channel(mesh.address("metering"), identity=identity) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await metering_pb2_grpc.MeteringServiceStub(channel).RecordUsage(
                    record, metadata=service, timeout=10
                )
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The same call from a service's certificate is served.
    async with direct_channel(mesh.address("tenant"), identity="storage") as channel:
        answer = await directory_pb2_grpc.TenantDirectoryServiceStub(channel).ResolveTenant(
            resolve, metadata=service, timeout=10
        )
    assert answer.tenant_id == tenant


async def test_a_service_client_accepts_only_the_service_it_meant(mesh: RunningMesh) -> None:
    """A client pinned to TenantService refuses StorageService's (valid, same-CA) certificate:
    a misrouted or impersonating endpoint fails the handshake."""
    settings = MeshSettings(tls_dir=tls_dir())
    storage = mesh.address("storage")
    async with tls.open_channel(settings, "tenant", identity="storage", address=storage) as ch:
        err = await _health(ch)
    assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE
    async with tls.open_channel(settings, "storage", identity="tenant", address=storage) as ch:
        assert await _health(ch) is None


def test_dev_certificates_are_private_and_name_each_identity(tmp_path: Path) -> None:
    settings = MeshSettings(home=tmp_path / "home")
    directory = tls.ensure_certs(settings)
    assert directory == tmp_path / "home" / "tls"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(directory.iterdir())
    assert {f.name for f in files} >= {"ca.pem", "ca.key", "envoy.pem", "envoy.key", "storage.pem"}
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    for name in tls.IDENTITIES:
        cert = x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [f"spiffe://makoto/{name}"]
        assert f"{name}.makoto.internal" in sans.get_values_for_type(x509.DNSName)
    before = {f.name: f.read_bytes() for f in files}
    assert tls.ensure_certs(settings) == directory  # made once, then reused
    assert {f.name: f.read_bytes() for f in sorted(directory.iterdir())} == before


# -- Envoy verifies the service's SAN ---------------------------------------------------------


async def _stand_in(settings: MeshSettings, port: int, certificate_of: str) -> grpc.aio.Server:
    """A server on a service's port that is healthy and implements nothing else, presenting
    `certificate_of`'s certificate."""
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_secure_port(f"{settings.host}:{port}", tls.server_credentials(settings, certificate_of))
    await server.start()
    return server


@pytest.fixture
async def wrong_san_edge(tmp_path: Path) -> AsyncIterator[tuple[MeshSettings, Path]]:
    """Envoy (as `makoto up` configures it) whose storage cluster reaches a server presenting
    MeteringService's certificate, and whose tenant cluster reaches one presenting TenantService's."""
    settings = make_settings(tmp_path / "home")
    servers = [
        await _stand_in(settings, settings.storage_port, "metering"),
        await _stand_in(settings, settings.tenant_port, "tenant"),
    ]
    config = write_config(settings)
    logs = settings.home / "logs"
    envoy = await Child.start(envoy_spec(settings, config, logs))
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                try:
                    await client.get(f"http://{settings.host}:{settings.envoy_port}/healthz")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("envoy did not start:\n" + envoy.log_tail(40)) from None
                    await asyncio.sleep(0.1)
        yield settings, logs / "envoy-access.log"
    finally:
        await envoy.stop(5)
        for server in servers:
            await server.stop(None)


async def test_envoy_refuses_a_service_presenting_another_services_certificate(
    wrong_san_edge: tuple[MeshSettings, Path],
) -> None:
    settings, access_log = wrong_san_edge
    target = f"{settings.host}:{settings.envoy_port}"
    async with grpc.aio.insecure_channel(target) as channel:
        # The control: the tenant cluster's server has the right certificate, so the call
        # reaches it (it implements no TenantService: UNIMPLEMENTED comes from the server).
        with pytest.raises(grpc.aio.AioRpcError) as reached:
            await tenant_pb2_grpc.TenantServiceStub(channel).GetTenant(
                tenant_pb2.GetTenantRequest(tenant_id="acme"),
                metadata=bearer(settings, Role.TENANT_ADMIN, "acme"),
                timeout=10,
            )
        assert reached.value.code() == grpc.StatusCode.UNIMPLEMENTED, reached.value
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await storage_service_pb2_grpc.StorageServiceStub(channel).GetItem(
                items_pb2.GetItemRequest(tenant_id="acme", collection="c", partition_key="p", sort_key="s"),
                metadata=bearer(settings, Role.TENANT_ADMIN, "acme"),
                timeout=10,
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(
            f"http://{target}/api/v1/tenants/acme/collections/c/partitions/p/items/s",
            headers=dict(bearer(settings, Role.TENANT_ADMIN, "acme")),
        )
    assert r.status_code == 503, r.text
    # The reason is in Envoy's access log: the handshake failed on certificate verification.
    deadline = time.monotonic() + 10
    while True:
        text = access_log.read_text() if access_log.exists() else ""
        rows = [json.loads(line) for line in text.splitlines()]
        failed = [row for row in rows if row.get("cluster") == "storage" and row.get("upstream_failure")]
        if len(failed) >= 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert len(failed) >= 2, rows
    for row in failed:
        assert row["status"] in (200, 503), row  # gRPC: HTTP 200 + grpc-status 14 (UNAVAILABLE)
        assert "CERTIFICATE_VERIFY_FAILED" in row["upstream_failure"], row
    assert not [row for row in rows if row.get("cluster") == "tenant" and row.get("upstream_failure")]


# -- the plaintext health port and the development opt-out -----------------------------------


async def test_the_health_port_is_plaintext_and_serves_health_only(tmp_path: Path) -> None:
    """For Kubernetes' gRPC probes (they cannot present a certificate): health, nothing else."""
    settings = make_settings(tmp_path / "home", health_port=free_port())
    probe = f"{settings.host}:{settings.health_port}"
    async with running_server(build_tenant, settings):
        async with grpc.aio.insecure_channel(probe) as channel:
            assert await _health(channel) is None
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await tenant_pb2_grpc.TenantServiceStub(channel).ListTenants(
                    tenant_pb2.ListTenantsRequest(), metadata=bearer(settings, Role.PLATFORM_ADMIN), timeout=5
                )
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        async with grpc.aio.insecure_channel(settings.address("tenant")) as channel:
            err = await _health(channel)
            assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE


async def test_plaintext_only_when_switched_off_explicitly(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", tls=False)
    async with running_server(build_tenant, settings):
        async with grpc.aio.insecure_channel(settings.address("tenant")) as channel:
            assert await _health(channel) is None
