"""Nothing of a tenant's data is copied into the platform's own stores: content planted through
the API (an object's bytes, an item's attribute, a chat prompt) is looked for, byte for byte, in
every file the mesh wrote outside the tenant's own store (platform databases and their WAL files,
usage spools, secrets, service and Envoy logs) and in the Redis keys of this mesh. It must be
found in the tenant's store (so the scan can see it) and nowhere else."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis_async

from services.common.identity import Role
from tests.e2e.conftest import RunningMesh

pytestmark = pytest.mark.e2e


def files_holding(root: Path, needle: bytes) -> set[Path]:
    found = set()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    found.add(path)
            except OSError:
                continue
    return found


async def test_planted_tenant_content_stays_in_the_tenant_store(mesh: RunningMesh) -> None:
    tenant = f"res-{uuid.uuid4().hex[:10]}"
    marker = f"PLANTED-{uuid.uuid4().hex}"
    admin, user = mesh.headers(Role.PLATFORM_ADMIN), mesh.headers(Role.TENANT_ADMIN, tenant)
    root = f"/api/v1/tenants/{tenant}"
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        r = await c.post("/api/v1/admin/tenants", json={"tenantId": tenant}, headers=admin)
        assert r.status_code == 200, r.text
        r = await c.put(
            f"{root}/objects/doc.txt",
            content=f"object {marker} body".encode(),
            headers={**user, "Content-Type": "text/plain"},
        )
        assert r.status_code == 200, r.text
        r = await c.put(
            f"{root}/collections/notes/partitions/p1/items/s1",
            json={"attributes": {"body": {"stringValue": f"item {marker}"}}},
            headers=user,
        )
        assert r.status_code == 200, r.text
        r = await c.post(
            f"{root}/chat/completions",
            json={"messages": [{"role": "user", "content": f"prompt {marker}"}]},
            headers=user,
        )
        assert r.status_code == 200, r.text
        # Usage is delivered asynchronously: wait until it reached MeteringService, so the
        # spools and the usage store hold whatever they would hold.
        for _ in range(100):
            usage = await c.get(f"{root}/usage", params={"meter": "api_calls"}, headers=user)
            if usage.status_code == 200 and usage.json().get("rows"):
                break
            await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # log buffers flushed

    needle = marker.encode()
    found = files_holding(mesh.home, needle)
    tenant_store = mesh.settings.data_dir / "tenants" / tenant
    inside = {p for p in found if p.is_relative_to(tenant_store)}
    assert inside, f"the scan cannot see the planted content in the tenant's own store {tenant_store}"
    outside = sorted(str(p.relative_to(mesh.home)) for p in found - inside)
    assert outside == [], f"tenant content found in platform files: {outside}"

    client = redis_async.Redis.from_url(mesh.settings.redis_url)
    try:
        # The mesh's processes use the default key prefix ("makoto:"); the test's own settings
        # carry another one. Scan both families.
        async for key in client.scan_iter(match="makoto*", count=1000):
            assert needle not in key
            if await client.type(key) == b"string":
                assert needle not in (await client.get(key) or b"")
    finally:
        await client.aclose()
