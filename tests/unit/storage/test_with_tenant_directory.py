"""Production wiring: StorageService resolving tenants through the real TenantService's
directory (service token, cache), on the directory the tenant provisioner made."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.api import httpbody_pb2
from makoto.storage.v1 import items_pb2, objects_pb2, storage_service_pb2_grpc
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.config import MeshSettings
from services.common.identity import Role
from services.storage.server import build as build_storage
from services.tenant.server import build as build_tenant
from tests.support import bearer, direct_channel, make_settings, running_server
from tests.unit.storage.conftest import MemoryRecorder


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[tuple[MeshSettings, MemoryRecorder]]:
    settings = make_settings(tmp_path / "home", directory_cache_ttl_seconds=0.2)
    recorder = MemoryRecorder()
    async with running_server(functools.partial(build_tenant, recorder_factory=None), settings):
        async with running_server(functools.partial(build_storage, recorder=recorder), settings):
            yield settings, recorder


async def test_storage_follows_the_tenant_directory(mesh: tuple[MeshSettings, MemoryRecorder]) -> None:
    settings, recorder = mesh
    admin = bearer(settings, Role.PLATFORM_ADMIN)
    member = bearer(settings, Role.MEMBER, "acme")
    async with (
        direct_channel(settings.address("tenant")) as tch,
        direct_channel(settings.address("storage")) as sch,
    ):
        tenants = tenant_pb2_grpc.TenantServiceStub(tch)
        storage = storage_service_pb2_grpc.StorageServiceStub(sch)
        created = await tenants.CreateTenant(
            tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id="acme")), metadata=admin
        )
        assert created.state == tenant_pb2.TENANT_STATE_ACTIVE

        meta = await storage.PutObjectContent(
            objects_pb2.PutObjectContentRequest(
                tenant_id="acme",
                key="hello.txt",
                content=httpbody_pb2.HttpBody(content_type="text/plain", data=b"hi"),
            ),
            metadata=member,
        )
        assert meta.size_bytes == 2
        item = await storage.PutItem(
            items_pb2.PutItemRequest(
                tenant_id="acme", item=items_pb2.Item(collection="notes", partition_key="p", sort_key="s")
            ),
            metadata=member,
        )
        assert item.etag
        root = settings.data_dir / "tenants" / "acme"
        assert (root / "objects" / "index.sqlite3").exists()
        assert (root / "items.sqlite3").exists()
        assert [e["value"] for e in recorder.events if e["meter"] == "storage_bytes"] == [2]

        await tenants.SuspendTenant(tenant_pb2.SuspendTenantRequest(tenant_id="acme"), metadata=admin)
        await asyncio.sleep(0.3)  # past the directory cache TTL
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await storage.GetObjectMetadata(
                objects_pb2.GetObjectMetadataRequest(tenant_id="acme", key="hello.txt"), metadata=member
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

        await tenants.ResumeTenant(tenant_pb2.ResumeTenantRequest(tenant_id="acme"), metadata=admin)
        await asyncio.sleep(0.3)
        head = await storage.GetObjectMetadata(
            objects_pb2.GetObjectMetadataRequest(tenant_id="acme", key="hello.txt"), metadata=member
        )
        assert head.etag == meta.etag

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await storage.GetObjectMetadata(
                objects_pb2.GetObjectMetadataRequest(tenant_id="nobody", key="x"),
                metadata=bearer(settings, Role.MEMBER, "nobody"),
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
