"""What the cloud object adapters do besides writing, one suite over S3 (moto server) and Azure
Blob (Azurite), parametrised by backend (conftest.py): ranged reads, listing (prefix, pages,
byte order, tokens), delete, signed URLs, provisioning and deprovisioning, and the registry
building a store from a binding and its secret.

Backend-only behaviour (SAS-only and connection-string credentials, SAS enforcement, blob
names, moto accepting any credentials) is in tests/unit/storage_blob/ and storage_s3/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.config import MeshSettings
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.storage.ports import ObjectInfo
from services.storage.registry import AdapterContext, default_registry
from tests.contract.emulators import StaticSecrets
from tests.support import DEV_EGRESS_ALLOW
from tests.unit.storage_cloud_objects.conftest import Cloud
from tests.unit.storage_s3.helpers import chunked, collect, pattern, sha

KIB = 1024


async def put_bytes(
    store: Any, key: str, data: bytes, *, user_metadata: dict[str, str] | None = None
) -> ObjectInfo:
    info: ObjectInfo = await store.put(
        key, chunked(data, 64 * KIB), content_type="application/x-test", user_metadata=user_metadata or {}
    )
    return info


async def test_ranged_reads(cloud: Cloud) -> None:
    store = await cloud.make(**cloud.ranged_read_options)
    data = pattern(200 * KIB, seed=13)
    await put_bytes(store, "r", data)
    cases = [(0, 1), (10, 20), (100 * KIB, None), (200 * KIB - 1, 5), (5, 0), (0, None), (1, 150 * KIB)]
    for start, length in cases:
        info, stream = await store.get("r", start=start, length=length)
        assert info.size == len(data)
        end = None if length is None else start + length
        assert await collect(stream) == data[start:end], (start, length)
    for start in (200 * KIB, 300 * KIB):
        with pytest.raises(InvalidArgument):
            await store.get("r", start=start)
    with pytest.raises(NotFound):
        await store.get("missing", start=3, length=2)


async def test_list_prefix_pagination_and_byte_order(cloud: Cloud) -> None:
    store = await cloud.make()
    keys = ["p/a", "p/b", "p/B", "p/\u00e9", "p/\U0001f600", "p/z/1", "p/z/2", "q/other", "pa"]
    for k in keys:
        await put_bytes(store, k, k.encode(), user_metadata={"k": "v"})
    expected = sorted((k for k in keys if k.startswith("p/")), key=lambda k: k.encode())
    seen: list[str] = []
    token, pages = "", 0
    while True:
        page = await store.list("p/", 3, token)
        pages += 1
        assert len(page.objects) <= 3
        for obj in page.objects:
            assert obj.size == len(obj.key.encode()) and obj.sha256 == sha(obj.key.encode())
            assert obj.content_type == "application/x-test" and dict(obj.user_metadata) == {"k": "v"}
        seen += [o.key for o in page.objects]
        token = page.next_page_token
        if not token:
            break
    assert seen == expected and pages == 3
    # Stable tokens: replaying the first token gives the same second page.
    first = await store.list("p/", 3, "")
    again = await store.list("p/", 3, first.next_page_token)
    assert [o.key for o in again.objects] == expected[3:6]
    with pytest.raises(InvalidArgument):
        await store.list("q/", 3, first.next_page_token)  # token of another query
    with pytest.raises(InvalidArgument):
        await store.list("p/", 3, "not-a-token!")
    assert [o.key for o in (await store.list("", 0, "")).objects] == sorted(keys, key=lambda k: k.encode())


async def test_delete(cloud: Cloud) -> None:
    store = await cloud.make()
    put = await put_bytes(store, "d/x", b"12345")
    deleted = await store.delete("d/x")
    assert deleted.size == 5 and deleted.etag == put.etag
    for op in (store.delete("d/x"), store.head("d/x"), store.get("d/x")):
        with pytest.raises(NotFound):
            await op


async def test_signed_urls_get_and_put(cloud: Cloud) -> None:
    store = await cloud.make()
    assert store.capabilities.sign_url
    await put_bytes(store, "s/file name.bin", b"signed bytes")
    before = datetime.now(UTC)
    signed = await store.sign_url("s/file name.bin", "GET", timedelta(minutes=5))
    assert before + timedelta(minutes=4) < signed.expires <= datetime.now(UTC) + timedelta(minutes=5)
    async with httpx.AsyncClient() as http:
        resp = await http.get(signed.url)
        assert resp.status_code == 200 and resp.content == b"signed bytes"
        put_url = await store.sign_url("s/uploaded.bin", "PUT", timedelta(seconds=60))
        resp = await http.put(put_url.url, content=b"via signed put", headers=cloud.signed_put_headers)
        assert resp.status_code == cloud.signed_put_status
    _, stream = await store.get("s/uploaded.bin")
    assert await collect(stream) == b"via signed put"
    with pytest.raises(InvalidArgument):
        await store.sign_url("s/file name.bin", "GET", timedelta(days=8))


async def test_provision_and_deprovision_are_idempotent(cloud: Cloud) -> None:
    store = await cloud.make(provision=False)
    assert cloud.container(store) == cloud.platform_name(store.cfg.tenant_id)
    with pytest.raises(FailedPrecondition):  # bucket/container not there yet: a binding problem
        await put_bytes(store, "x", b"1")
    await store.provision()
    await store.provision()
    assert cloud.container(store) in await cloud.containers(store)
    await put_bytes(store, "x", b"1")
    await cloud.stage_dangling(store, "dangling")  # an unfinished upload does not block removal
    await store.deprovision()
    await store.deprovision()
    assert cloud.container(store) not in await cloud.containers(store)


async def test_registry_builds_a_store_from_binding_and_secret(cloud: Cloud, tmp_path: Path) -> None:
    binding, secrets = cloud.registry_binding()
    tenant = f"reg-{cloud.name.replace('_', '')}"
    ctx = AdapterContext(
        tenant_id=tenant,
        settings=MeshSettings(home=tmp_path, egress_allow=list(DEV_EGRESS_ALLOW)),
        secrets=StaticSecrets(dict(secrets)),
    )
    store = await default_registry().build_objects(ctx, binding)
    try:
        assert isinstance(store, cloud.store_type) and cloud.container(store) == cloud.platform_name(tenant)
        await store.put("k", chunked(b"via registry"), content_type="text/plain", user_metadata={})
        _, stream = await store.get("k")
        assert await collect(stream) == b"via registry"
        await store.deprovision()
    finally:
        await store.close()
