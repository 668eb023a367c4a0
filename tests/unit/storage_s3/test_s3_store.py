"""S3ObjectStore against moto server: streaming, multipart, conditions, listing, signing, lifecycle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.storage.adapters.s3 import S3ObjectStore
from services.storage.ports import ObjectInfo
from tests.unit.storage_s3.conftest import MakeStore
from tests.unit.storage_s3.helpers import (
    MIB,
    chunked,
    collect,
    failing_after,
    generated,
    generated_sha,
    pattern,
    sha,
    stalling_after,
    traced_peak,
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


async def test_small_object_round_trip(make_store: MakeStore) -> None:
    store = await make_store()
    data = b"hello makoto"
    meta = {
        "owner": "r\u00e9mi \u65e5\u672c",
        "empty": "",
        "spaced": " x ",
        "looks-encoded": "=?UTF-8?B?x?=",
        "a_b": "1",
    }
    info = await store.put("docs/hello.txt", chunked(data), content_type="text/plain", user_metadata=meta)
    assert (info.size, info.sha256, info.content_type) == (len(data), sha(data), "text/plain")
    assert dict(info.user_metadata) == meta
    head = await store.head("docs/hello.txt")
    assert head == info
    got, stream = await store.get("docs/hello.txt")
    assert got.sha256 == sha(data) and await collect(stream) == data


async def test_multipart_upload_streams_large_object(make_store: MakeStore) -> None:
    store = await make_store(part_size_bytes=PART, upload_concurrency="2")
    data = pattern(11 * MIB + 7, seed=1)
    info = await put_bytes(store, "big/blob.bin", data, user_metadata={"kind": "big"})
    head = await store.head("big/blob.bin")
    assert head == info
    assert (head.size, head.sha256, head.content_type) == (len(data), sha(data), "application/x-test")
    assert dict(head.user_metadata) == {"kind": "big"}
    _, stream = await store.get("big/blob.bin")
    chunks = [c async for c in stream]
    assert max(len(c) for c in chunks) <= MIB  # streamed in bounded pieces
    assert b"".join(chunks) == data
    assert await pending_uploads(store) == []


async def test_object_of_exactly_one_part_and_empty_object(make_store: MakeStore) -> None:
    store = await make_store(part_size_bytes=PART)
    one = pattern(5 * MIB, seed=2)
    assert (await put_bytes(store, "one", one)).sha256 == sha(one)
    _, stream = await store.get("one")
    assert await collect(stream) == one
    empty = await put_bytes(store, "empty", b"")
    assert (empty.size, empty.sha256) == (0, sha(b""))
    info, stream = await store.get("empty")
    assert info.size == 0 and await collect(stream) == b""
    info, stream = await store.get("empty", start=0, length=10)
    assert await collect(stream) == b""


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


async def test_create_only_writes(make_store: MakeStore) -> None:
    store = await make_store(part_size_bytes=PART)
    assert store.capabilities.if_none_match
    await put_bytes(store, "once", b"first", if_none_match=True)
    with pytest.raises(AlreadyExists):
        await put_bytes(store, "once", b"second", if_none_match=True)
    big = pattern(6 * MIB, seed=3)
    with pytest.raises(AlreadyExists):  # the multipart path sends If-None-Match on Complete
        await put_bytes(store, "once", big, if_none_match=True)
    _, stream = await store.get("once")
    assert await collect(stream) == b"first"
    assert await pending_uploads(store) == []
    info = await put_bytes(store, "fresh-big", big, if_none_match=True)
    assert info.sha256 == sha(big)


async def test_failed_upload_aborts_and_keeps_previous_version(make_store: MakeStore) -> None:
    store = await make_store(part_size_bytes=PART)
    old = b"old version"
    await put_bytes(store, "k", old)
    data = pattern(16 * MIB, seed=4)
    with pytest.raises(ConnectionResetError):
        await store.put("k", failing_after(data, 12 * MIB), content_type="x/y", user_metadata={})
    with pytest.raises(ConnectionResetError):
        await store.put("new-key", failing_after(data, 12 * MIB), content_type="x/y", user_metadata={})
    assert await pending_uploads(store) == []
    info, stream = await store.get("k")
    assert await collect(stream) == old and info.sha256 == sha(old)
    with pytest.raises(NotFound):
        await store.head("new-key")
    assert [o.key for o in (await store.list("", 100, "")).objects] == ["k"]


async def test_cancelled_upload_aborts_multipart(make_store: MakeStore) -> None:
    store = await make_store(part_size_bytes=PART)
    old = b"keep me"
    await put_bytes(store, "c", old)
    reached = asyncio.Event()
    data = pattern(20 * MIB, seed=5)
    task = asyncio.create_task(
        store.put("c", stalling_after(data, 11 * MIB, reached), content_type="x/y", user_metadata={})
    )
    await asyncio.wait_for(reached.wait(), 10)
    client = await store.client()
    for _ in range(200):  # wait until parts really sit in S3, so the abort has work to do
        uploads = await pending_uploads(store)
        if uploads:
            parts = await client.list_parts(Bucket=store.cfg.bucket, Key="c", UploadId=uploads[0]["UploadId"])
            if len(parts.get("Parts", [])) >= 2:
                break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("multipart upload never started")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await pending_uploads(store) == []
    _, stream = await store.get("c")
    assert await collect(stream) == old


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


async def test_oversized_metadata_is_refused_before_writing(make_store: MakeStore) -> None:
    store = await make_store()
    with pytest.raises(InvalidArgument) as err:
        await put_bytes(store, "m", b"x", user_metadata={f"k{i}": "v" * 1000 for i in range(3)})
    assert err.value.field_violations[0][0] == "user_metadata"
    with pytest.raises(NotFound):
        await store.head("m")


async def test_memory_stays_bounded_both_ways(make_store: MakeStore) -> None:
    """48 MiB through 5 MiB parts, two in flight: the adapter holds a few parts, never the object."""
    store = await make_store(part_size_bytes=PART, upload_concurrency="2")
    size = 48 * MIB
    info, peak = await traced_peak(
        store.put("mem/big", generated(size, seed=9), content_type="x/y", user_metadata={})
    )
    assert info.size == size and info.sha256 == generated_sha(size, seed=9)
    # Each part in flight is held twice (ours + the HTTP stack's copy), plus the one filling:
    # about (2 * 2 + 1) x 5 MiB, whatever the object's size.
    assert peak < 30 * MIB, peak

    async def drain() -> int:
        _, stream = await store.get("mem/big")
        return sum([len(c) async for c in stream])

    total, peak = await traced_peak(drain())
    assert total == size and peak < 8 * MIB, peak
