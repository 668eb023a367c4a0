"""S3ObjectStore against moto server: ranged reads, listing, delete, signing, lifecycle.

The writer (streaming, parts, create-only, aborts, memory) is tested for both cloud adapters
by one parametrised suite: tests/unit/storage_cloud_objects/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.storage.adapters.s3 import S3ObjectStore
from services.storage.ports import ObjectInfo
from tests.unit.storage_s3.conftest import MakeStore
from tests.unit.storage_s3.helpers import (
    MIB,
    chunked,
    collect,
    sha,
)

PART = str(5 * MIB)


async def put_bytes(
    store: S3ObjectStore,
    key: str,
    data: bytes,
    *,
    content_type: str = "application/x-test",
    user_metadata: dict[str, str] | None = None,
    if_none_match: bool = False,
) -> ObjectInfo:
    return await store.put(
        key,
        chunked(data),
        content_type=content_type,
        user_metadata=user_metadata or {},
        if_none_match=if_none_match,
    )


async def pending_uploads(store: S3ObjectStore) -> list[dict[str, object]]:
    client = await store.client()
    resp = await client.list_multipart_uploads(Bucket=store.cfg.bucket)
    return list(resp.get("Uploads", []))


async def test_ranged_reads(make_store: MakeStore) -> None:
    store = await make_store()
    data = bytes(range(256)) * 4
    await put_bytes(store, "r", data)
    for start, length in [(0, 1), (10, 20), (1000, None), (1023, 5), (5, 0), (0, None)]:
        info, stream = await store.get("r", start=start, length=length)
        assert info.size == len(data)
        end = None if length is None else start + length
        assert await collect(stream) == data[start:end], (start, length)
    for start in (1024, 5000):
        with pytest.raises(InvalidArgument):
            await store.get("r", start=start)
    with pytest.raises(NotFound):
        await store.get("missing", start=3, length=2)


async def test_list_prefix_pagination_and_byte_order(make_store: MakeStore) -> None:
    store = await make_store()
    keys = ["p/a", "p/b", "p/B", "p/\u00e9", "p/\U0001f600", "p/z/1", "p/z/2", "q/other", "pa"]
    for k in keys:
        await put_bytes(store, k, k.encode(), user_metadata={"k": "v"})
    expected = sorted((k for k in keys if k.startswith("p/")), key=lambda k: k.encode())
    seen: list[str] = []
    token = ""
    pages = 0
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


async def test_delete(make_store: MakeStore) -> None:
    store = await make_store()
    put = await put_bytes(store, "d/x", b"12345")
    deleted = await store.delete("d/x")
    assert deleted.size == 5 and deleted.etag == put.etag
    for op in (store.delete("d/x"), store.head("d/x"), store.get("d/x")):
        with pytest.raises(NotFound):
            await op


async def test_signed_urls_get_and_put(make_store: MakeStore) -> None:
    store = await make_store()
    assert store.capabilities.sign_url
    await put_bytes(store, "s/file.bin", b"signed bytes")
    before = datetime.now(UTC)
    signed = await store.sign_url("s/file.bin", "GET", timedelta(minutes=5))
    assert before + timedelta(minutes=4) < signed.expires <= datetime.now(UTC) + timedelta(minutes=5)
    async with httpx.AsyncClient() as http:
        resp = await http.get(signed.url)
        assert resp.status_code == 200 and resp.content == b"signed bytes"
        put_url = await store.sign_url("s/uploaded.bin", "PUT", timedelta(seconds=60))
        resp = await http.put(put_url.url, content=b"via signed put")
        assert resp.status_code == 200
    _, stream = await store.get("s/uploaded.bin")
    assert await collect(stream) == b"via signed put"
    with pytest.raises(InvalidArgument):
        await store.sign_url("s/file.bin", "GET", timedelta(days=8))


async def test_provision_and_deprovision_are_idempotent(make_store: MakeStore) -> None:
    store = await make_store(provision=False, part_size_bytes=PART)
    assert store.cfg.bucket == f"makoto-{store.cfg.tenant_id}-assets"
    with pytest.raises(FailedPrecondition):  # bucket not there yet: a binding problem
        await put_bytes(store, "x", b"1")
    await store.provision()
    await store.provision()
    client = await store.client()
    buckets = [b["Name"] for b in (await client.list_buckets())["Buckets"]]
    assert store.cfg.bucket in buckets
    await put_bytes(store, "x", b"1")
    await client.create_multipart_upload(Bucket=store.cfg.bucket, Key="dangling")
    await store.deprovision()
    await store.deprovision()
    buckets = [b["Name"] for b in (await client.list_buckets())["Buckets"]]
    assert store.cfg.bucket not in buckets
