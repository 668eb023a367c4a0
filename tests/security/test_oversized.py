"""Oversized input is refused without hurting anyone: a gRPC message above the services' limit on
each of the four service ports and through Envoy, an upload chunk above 1 MiB, REST bodies above
Envoy's limit, an enormous header. Nothing is stored, and afterwards every service is healthy
and serves normally."""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx
import pytest
from google.api import httpbody_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from makoto.llm.v1 import llm_pb2
from makoto.metering.v1 import metering_pb2
from makoto.storage.v1 import objects_pb2
from makoto.tenant.v1 import tenant_pb2

from services.common.identity import Role
from services.mesh.envoy_config import rest_body_limit
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import (
    API,
    SERVICES,
    Stubs,
    create_tenant,
    items_on_disk,
    object_keys_on_disk,
    refused,
    stubs,
)
from tests.support import client_stream, direct_channel

pytestmark = pytest.mark.e2e

BIG_CLIENT = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
SERVICE_NAMES = {
    "tenant": "makoto.tenant.v1.TenantService",
    "storage": "makoto.storage.v1.StorageService",
    "llm": "makoto.llm.v1.LLMService",
    "metering": "makoto.metering.v1.MeteringService",
}


def _upload(tenant: str, key: str, *chunks: bytes) -> list[objects_pb2.UploadObjectRequest]:
    header = objects_pb2.UploadObjectRequest(header=objects_pb2.UploadObjectHeader(tenant_id=tenant, key=key))
    return [header, *(objects_pb2.UploadObjectRequest(chunk=chunk) for chunk in chunks)]


async def assert_all_healthy(mesh: RunningMesh) -> None:
    for service in SERVICES:
        async with direct_channel(mesh.address(service)) as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAMES[service]), timeout=5
            )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
    async with httpx.AsyncClient(base_url=mesh.base_url) as c:
        assert (await c.get("/healthz")).status_code == 200


async def test_oversized_grpc_messages_are_refused(mesh: RunningMesh) -> None:
    tenant = create_tenant(mesh, "sec-big")
    over = mesh.settings.max_message_bytes + 1024
    blob = b"\x00" * over
    user = mesh.metadata(Role.TENANT_ADMIN, tenant)
    admin = mesh.metadata(Role.PLATFORM_ADMIN)

    def too_big(service: str, s: Stubs) -> Any:
        """One message above the limit for each service."""
        if service == "tenant":
            tenant_record = tenant_pb2.Tenant(tenant_id="sec-big-x", display_name="x" * over)
            return s.tenants.CreateTenant(
                tenant_pb2.CreateTenantRequest(tenant=tenant_record), metadata=admin
            )
        if service == "storage":
            content = httpbody_pb2.HttpBody(data=blob)
            return s.storage.PutObjectContent(
                objects_pb2.PutObjectContentRequest(tenant_id=tenant, key="big.bin", content=content),
                metadata=user,
            )
        if service == "llm":
            message = llm_pb2.ChatMessage(role="user", content="x" * over)
            return s.llm.CreateChatCompletion(
                llm_pb2.CreateChatCompletionRequest(tenant_id=tenant, messages=[message]), metadata=user
            )
        return s.metering.QueryUsage(
            metering_pb2.QueryUsageRequest(tenant_id=tenant, meter="x" * over), metadata=user
        )

    for service in SERVICES:
        async with direct_channel(mesh.address(service), options=BIG_CLIENT) as channel:
            err = await refused(too_big(service, stubs(channel)), grpc.StatusCode.RESOURCE_EXHAUSTED)
            assert "larger than max" in (err.details() or ""), service

    async with grpc.aio.insecure_channel(mesh.grpc_target, options=BIG_CLIENT) as channel:
        storage = stubs(channel).storage
        # Just above the limit: Envoy passes it on, the service refuses it.
        await refused(
            storage.PutObjectContent(
                objects_pb2.PutObjectContentRequest(
                    tenant_id=tenant, key="big.bin", content=httpbody_pb2.HttpBody(data=blob)
                ),
                metadata=user,
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        # Far above: Envoy stops buffering it before it reaches anyone (envoy/README.md).
        await refused(
            storage.PutObjectContent(
                objects_pb2.PutObjectContentRequest(
                    tenant_id=tenant, key="big.bin", content=httpbody_pb2.HttpBody(data=blob * 3)
                ),
                metadata=user,
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        # A streamed upload is unlimited in total, but each chunk is at most 1 MiB.
        for target in (mesh.grpc_target, mesh.address("storage")):
            async with mesh.channel(target, options=BIG_CLIENT) as direct:
                err = await refused(
                    client_stream(
                        stubs(direct).storage.UploadObject,
                        _upload(tenant, "chunky.bin", b"a" * 1024, b"b" * (1024 * 1024 + 1)),
                        user,
                    ),
                    grpc.StatusCode.INVALID_ARGUMENT,
                )
                assert "chunk" in (err.details() or "")

    assert object_keys_on_disk(mesh, tenant) == {}
    assert not (mesh.settings.data_dir / "tenants" / "sec-big-x").exists()
    await assert_all_healthy(mesh)
    # ...and they still serve: the same tenant stores and reads normally.
    async with grpc.aio.insecure_channel(mesh.grpc_target) as channel:
        storage = stubs(channel).storage
        put = await storage.PutObjectContent(
            objects_pb2.PutObjectContentRequest(
                tenant_id=tenant,
                key="small.txt",
                content=httpbody_pb2.HttpBody(content_type="text/plain", data=b"ok"),
            ),
            metadata=user,
        )
        assert put.size_bytes == 2


async def test_oversized_rest_bodies_and_headers_are_refused(mesh: RunningMesh) -> None:
    tenant = create_tenant(mesh, "sec-big-rest")
    limit = rest_body_limit(mesh.settings)
    root = f"{API}/tenants/{tenant}"
    user = mesh.headers(Role.TENANT_ADMIN, tenant)
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=60) as c:
        # A raw (HttpBody) upload above the limit: 413 from the transcoder.
        r = await c.put(
            f"{root}/objects/huge.bin",
            content=b"\0" * (limit + 1),
            headers={**user, "content-type": "application/octet-stream"},
        )
        assert r.status_code == 413
        # JSON bodies just above the limit: 413 from Envoy's body limit for JSON requests. (Far
        # above it Envoy answers 413 before the body is fully sent and closes the connection, which
        # httpx reports as a read error rather than the response.)
        for url, body in (
            (
                f"{root}/collections/notes/partitions/p/items/huge",
                {"attributes": {"s": {"stringValue": "x" * (limit + 1)}}},
            ),
            (f"{root}/chat/completions", {"messages": [{"role": "user", "content": "x" * (limit + 1)}]}),
        ):
            r = await c.request(
                "PUT" if "/items/" in url else "POST",
                url,
                content=json.dumps(body),
                headers={**user, "content-type": "application/json"},
            )
            assert r.status_code == 413, (url, r.status_code, r.text[:200])
        # An Authorization header far above Envoy's header limit.
        r = await c.get(f"{root}/objects", headers={"authorization": "Bearer " + "A" * 200_000})
        assert r.status_code == 431
        # Under the limit the same shapes are fine (the service's own item size rules apply).
        r = await c.put(
            f"{root}/collections/notes/partitions/p/items/fine",
            json={"attributes": {"s": {"stringValue": "x" * 1000}}},
            headers=user,
        )
        assert r.status_code == 200, r.text
    assert set(items_on_disk(mesh, tenant)) == {("notes", "p", "fine")}
    assert object_keys_on_disk(mesh, tenant) == {}
    await assert_all_healthy(mesh)
