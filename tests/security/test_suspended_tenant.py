"""A suspended tenant's valid token reads and writes nothing — over REST through Envoy and over gRPC
directly on the service ports — while GetTenant shows it SUSPENDED with the reason. Its data is
kept exactly as it was."""

from __future__ import annotations

import asyncio
import time

import grpc
import httpx
import pytest
from makoto.llm.v1 import llm_pb2
from makoto.storage.v1 import items_pb2, objects_pb2

from services.common.identity import Role
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import (
    API,
    create_tenant,
    error_info,
    items_on_disk,
    object_keys_on_disk,
    refused,
    stubs,
)
from tests.support import direct_channel

pytestmark = pytest.mark.e2e


async def test_suspended_tenant_cannot_touch_its_data(mesh: RunningMesh) -> None:
    tenant = create_tenant(mesh, "sec-susp")
    root = f"{API}/tenants/{tenant}"
    item = f"{root}/collections/notes/partitions/p/items/s"
    user = mesh.headers(Role.TENANT_ADMIN, tenant)
    admin = mesh.headers(Role.PLATFORM_ADMIN)
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        assert (
            await c.put(item, json={"attributes": {"v": {"intValue": "1"}}}, headers=user)
        ).status_code == 200
        r = await c.put(
            f"{root}/objects/kept.txt", content=b"kept", headers={**user, "content-type": "text/plain"}
        )
        assert r.status_code == 200
        items_before = items_on_disk(mesh, tenant)
        objects_before = object_keys_on_disk(mesh, tenant)

        r = await c.post(
            f"{API}/admin/tenants/{tenant}:suspend", json={"reason": "security hold"}, headers=admin
        )
        assert r.status_code == 200 and r.json()["state"] == "TENANT_STATE_SUSPENDED"
        # Data services cache a tenant's state for directory_cache_ttl_seconds.
        deadline = time.monotonic() + mesh.settings.directory_cache_ttl_seconds + 5
        while (await c.get(item, headers=user)).status_code != 403:
            assert time.monotonic() < deadline, "suspension never took effect"
            await asyncio.sleep(0.25)

        attempts = [
            ("GET", item, None),
            ("PUT", item, {"attributes": {"v": {"intValue": "2"}}}),
            ("DELETE", item, None),
            ("GET", f"{root}/collections/notes/partitions/p/items", None),
            ("GET", f"{root}/objects/kept.txt", None),
            ("DELETE", f"{root}/objects/kept.txt", None),
            ("GET", f"{root}/objects", None),
            ("POST", f"{root}/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
            ("POST", f"{root}/embeddings", {"input": ["hi"]}),
        ]
        for role in (Role.TENANT_ADMIN, Role.MEMBER):
            headers = mesh.headers(role, tenant)
            for method, url, body in attempts:
                r = await c.request(method, url, json=body, headers=headers)
                assert r.status_code == 403, (method, url, r.status_code, r.text)
                assert r.json()["details"][0]["reason"] == "TENANT_SUSPENDED"
            r = await c.put(
                f"{root}/objects/new.txt", content=b"new", headers={**headers, "content-type": "text/plain"}
            )
            assert r.status_code == 403
        # The tenant still sees its own record, and why it is suspended.
        r = await c.get(root, headers=user)
        assert r.status_code == 200
        assert (r.json()["state"], r.json()["stateReason"]) == ("TENANT_STATE_SUSPENDED", "security hold")

    md = mesh.metadata(Role.TENANT_ADMIN, tenant)
    async with direct_channel(mesh.address("storage")) as ch:
        s = stubs(ch)
        err = await refused(
            s.storage.GetItem(
                items_pb2.GetItemRequest(
                    tenant_id=tenant, collection="notes", partition_key="p", sort_key="s"
                ),
                metadata=md,
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert error_info(err).reason == "TENANT_SUSPENDED"

        async def download() -> None:
            async for _ in s.storage.DownloadObject(
                objects_pb2.DownloadObjectRequest(tenant_id=tenant, key="kept.txt"), metadata=md
            ):
                pass

        await refused(download(), grpc.StatusCode.PERMISSION_DENIED)
    async with direct_channel(mesh.address("llm")) as ch:
        s = stubs(ch)
        await refused(
            s.llm.CountTokens(
                llm_pb2.CountTokensRequest(
                    tenant_id=tenant, messages=[llm_pb2.ChatMessage(role="user", content="x")]
                ),
                metadata=md,
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        await refused(
            s.llm.ListModels(llm_pb2.ListModelsRequest(tenant_id=tenant), metadata=md),
            grpc.StatusCode.PERMISSION_DENIED,
        )

    # Nothing changed on disk: same items (same etags), same objects.
    assert items_on_disk(mesh, tenant) == items_before
    assert object_keys_on_disk(mesh, tenant) == objects_before
    assert set(objects_before) == {"kept.txt"}
