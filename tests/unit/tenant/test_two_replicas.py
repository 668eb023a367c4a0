"""Two TenantService replicas (two processes) on one fresh PostgreSQL database, started at the
same moment: both migrate (serialised by an advisory lock), both serve, and creates, retries
and updates sent to both at once never conflict."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

import asyncpg
import grpc
from google.protobuf import field_mask_pb2
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.identity import Role
from services.storage.server import build as build_storage
from services.tenant.schema import VERSION_TABLE
from tests.e2e.control_plane import NATS_URL, ControlPlane, private_prefix
from tests.support import bearer, direct_channel, free_port, make_settings, running_server
from tests.unit.tenant.conftest import MemoryRecorder


async def test_two_replicas_migrate_together_and_serve_without_conflict(tmp_path: Path, pg_url: str) -> None:
    settings = make_settings(tmp_path / "home", nats_url=NATS_URL, nats_subject_prefix=private_prefix())
    plane = ControlPlane(settings)
    ports = [free_port(), free_port()]
    try:
        for i, port in enumerate(ports):
            plane.start(
                f"tenant-{i}",
                module="services.tenant",
                port=port,
                MAKOTO_TENANT_PORT=str(port),
                MAKOTO_TENANT_DB_URL=pg_url,
            )
        await asyncio.gather(*(plane.wait_serving(f"tenant-{i}") for i in range(2)))

        dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn)
        try:
            versions = await conn.fetch(f"SELECT version_num FROM {VERSION_TABLE}")
        finally:
            await conn.close()
        assert len(versions) == 1, versions

        admin = bearer(settings, Role.PLATFORM_ADMIN)
        channels = [direct_channel(f"127.0.0.1:{p}") for p in ports]
        try:
            a, b = (tenant_pb2_grpc.TenantServiceStub(ch) for ch in channels)

            async def create(
                stub: tenant_pb2_grpc.TenantServiceStub, tenant_id: str, request_id: str = ""
            ) -> tenant_pb2.Tenant:
                made: tenant_pb2.Tenant = await stub.CreateTenant(
                    tenant_pb2.CreateTenantRequest(
                        tenant=tenant_pb2.Tenant(tenant_id=tenant_id), request_id=request_id
                    ),
                    metadata=admin,
                    timeout=30,
                )
                return made

            # The same create (same request_id) sent to both replicas at once: one tenant, both OK.
            for i in range(8):
                rid = f"00000000-0000-4000-8000-{i:012d}"
                first, second = await asyncio.gather(create(a, f"twin-{i}", rid), create(b, f"twin-{i}", rid))
                assert first.tenant_id == second.tenant_id == f"twin-{i}"
                assert first.create_time == second.create_time

            # One tenant id, two different requests: exactly one wins, the other is ALREADY_EXISTS.
            for i in range(4):
                outcomes = await asyncio.gather(
                    create(a, f"race-{i}"), create(b, f"race-{i}"), return_exceptions=True
                )
                errors = [o for o in outcomes if isinstance(o, BaseException)]
                assert len(errors) == 1, outcomes
                assert isinstance(errors[0], grpc.aio.AioRpcError)
                assert errors[0].code() == grpc.StatusCode.ALREADY_EXISTS

            # Distinct creates on both at once, then every tenant is readable on both replicas.
            made = await asyncio.gather(*(create(a if i % 2 else b, f"solo-{i}") for i in range(12)))
            assert all(t.state == tenant_pb2.TENANT_STATE_ACTIVE for t in made)
            for stub in (a, b):
                for i in range(12):
                    got = await stub.GetTenant(
                        tenant_pb2.GetTenantRequest(tenant_id=f"solo-{i}"), metadata=admin
                    )
                    assert got.state == tenant_pb2.TENANT_STATE_ACTIVE

            # Updates without an etag on both replicas at once: all succeed (compare-and-swap retried).
            async def rename(stub: tenant_pb2_grpc.TenantServiceStub, name: str) -> tenant_pb2.Tenant:
                updated: tenant_pb2.Tenant = await stub.UpdateTenant(
                    tenant_pb2.UpdateTenantRequest(
                        tenant=tenant_pb2.Tenant(tenant_id="solo-0", display_name=name),
                        update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
                    ),
                    metadata=admin,
                )
                return updated

            results = await asyncio.gather(*(rename(a if i % 2 else b, f"name {i}") for i in range(6)))
            final = await a.GetTenant(tenant_pb2.GetTenantRequest(tenant_id="solo-0"), metadata=admin)
            assert final.display_name in {r.display_name for r in results}
            assert final == await b.GetTenant(tenant_pb2.GetTenantRequest(tenant_id="solo-0"), metadata=admin)

            # A suspension made on one replica is what the other one answers.
            await a.SuspendTenant(
                tenant_pb2.SuspendTenantRequest(tenant_id="solo-1", reason="x"), metadata=admin
            )
            got = await b.GetTenant(tenant_pb2.GetTenantRequest(tenant_id="solo-1"), metadata=admin)
            assert got.state == tenant_pb2.TENANT_STATE_SUSPENDED

            # The data plane asks both replicas (round-robin target). Without push (no NATS for
            # this StorageService), kill -9 one replica: the other one keeps answering, so
            # changes still bite (stale answers from a dead replica would never show them).
            storage_settings = settings.model_copy(
                update={
                    "nats_url": "",
                    "directory_cache_ttl_seconds": 0.3,
                    "tenant_directory_target": f"ipv4:127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}",
                }
            )
            build = functools.partial(build_storage, recorder=MemoryRecorder())
            async with (
                running_server(build, storage_settings),
                direct_channel(storage_settings.address("storage")) as sch,
            ):
                storage = storage_service_pb2_grpc.StorageServiceStub(sch)
                member = bearer(settings, Role.MEMBER, "solo-2")

                async def put() -> None:
                    await storage.PutItem(
                        items_pb2.PutItemRequest(
                            tenant_id="solo-2",
                            item=items_pb2.Item(collection="c", partition_key="p", sort_key="s"),
                        ),
                        metadata=member,
                        timeout=10,
                    )

                for _ in range(5):
                    await put()
                plane.kill9("tenant-0")
                for _ in range(5):
                    await put()  # still served
                started = time.monotonic()
                await b.SuspendTenant(
                    tenant_pb2.SuspendTenantRequest(tenant_id="solo-2", reason="x"), metadata=admin
                )
                while True:
                    try:
                        await put()
                    except grpc.aio.AioRpcError as err:
                        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err
                        break
                    assert time.monotonic() - started < 3.0, "suspension never reached StorageService"
                    await asyncio.sleep(0.02)
                print(
                    f"\n[drill replicas] one of two replicas killed; suspension bit after "
                    f"{time.monotonic() - started:.3f}s through the other (polling, TTL 0.3 s)"
                )
        finally:
            for ch in channels:
                await ch.close()
        assert "Traceback" not in plane.log_text("tenant-1")
    finally:
        plane.stop_all()
