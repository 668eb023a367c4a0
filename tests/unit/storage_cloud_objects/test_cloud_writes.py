"""The object writer skeleton (services/storage/adapters/object_writer.py) through each cloud
adapter's primitives, against its emulator: one suite, parametrised by backend (conftest.py).

Single-request and multipart/staged writes, the one-part boundary, create-only on both paths,
abort on failure and on cancellation, metadata refused before any byte moves, bounded memory.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.common.errors import AlreadyExists, InvalidArgument, NotFound
from services.storage.ports import ObjectInfo
from tests.unit.storage_cloud_objects.conftest import Cloud
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

KIB = 1024


async def put_bytes(
    store: Any,
    key: str,
    data: bytes,
    *,
    user_metadata: dict[str, str] | None = None,
    if_none_match: bool = False,
) -> ObjectInfo:
    info: ObjectInfo = await store.put(
        key,
        chunked(data, 64 * KIB),
        content_type="application/x-test",
        user_metadata=user_metadata or {},
        if_none_match=if_none_match,
    )
    return info


async def test_small_object_round_trip_with_awkward_metadata(cloud: Cloud) -> None:
    store = await cloud.make()
    data = b"hello makoto"
    meta = {"owner": "r\u00e9mi \u65e5\u672c", "empty": "", "0-digit_first": " x ", "a_b": "=?UTF-8?B?x?="}
    info = await store.put("docs/hello.txt", chunked(data), content_type="text/plain", user_metadata=meta)
    assert (info.size, info.sha256, info.content_type) == (len(data), sha(data), "text/plain")
    assert dict(info.user_metadata) == meta
    assert await store.head("docs/hello.txt") == info
    got, stream = await store.get("docs/hello.txt")
    assert got.sha256 == sha(data) and await collect(stream) == data


async def test_multipart_write_streams_a_large_object(cloud: Cloud) -> None:
    store = await cloud.make(part_size_bytes=str(cloud.part), upload_concurrency="3")
    data = pattern(2 * cloud.part + cloud.part // 3 + 7, seed=1)  # three parts, the last short
    info = await put_bytes(store, "big/blob.bin", data, user_metadata={"kind": "big"})
    head = await store.head("big/blob.bin")
    assert head == info
    assert (head.size, head.sha256, dict(head.user_metadata)) == (len(data), sha(data), {"kind": "big"})
    _, stream = await store.get("big/blob.bin")
    chunks = [c async for c in stream]
    assert max(len(c) for c in chunks) <= MIB and b"".join(chunks) == data
    assert await cloud.staged(store, "big/blob.bin") == 0  # every part went into the object


async def test_exactly_one_part_is_a_single_write_and_empty_objects_work(cloud: Cloud) -> None:
    store = await cloud.make(part_size_bytes=str(cloud.part))
    one = pattern(cloud.part, seed=2)
    assert (await put_bytes(store, "one", one)).sha256 == sha(one)
    assert await cloud.staged(store, "one") == 0
    _, stream = await store.get("one")
    assert await collect(stream) == one
    empty = await put_bytes(store, "empty", b"")
    assert (empty.size, empty.sha256) == (0, sha(b""))
    info, stream = await store.get("empty", start=0, length=10)
    assert info.size == 0 and await collect(stream) == b""


async def test_create_only_on_the_single_and_the_multipart_path(cloud: Cloud) -> None:
    store = await cloud.make(part_size_bytes=str(cloud.part))
    assert store.capabilities.if_none_match
    await put_bytes(store, "once", b"first", if_none_match=True)
    with pytest.raises(AlreadyExists):
        await put_bytes(store, "once", b"second", if_none_match=True)
    big = pattern(cloud.part + cloud.part // 2, seed=3)
    with pytest.raises(AlreadyExists):  # refused where the object becomes visible: the commit
        await put_bytes(store, "once", big, if_none_match=True)
    _, stream = await store.get("once")
    assert await collect(stream) == b"first"
    assert await cloud.aborted(store, "once")
    assert (await put_bytes(store, "fresh-big", big, if_none_match=True)).sha256 == sha(big)


async def test_failed_stream_aborts_and_keeps_the_previous_version(cloud: Cloud) -> None:
    store = await cloud.make(part_size_bytes=str(cloud.part), upload_concurrency="1")
    old = b"old version"
    await put_bytes(store, "k", old)
    data = pattern(4 * cloud.part, seed=4)
    for key in ("k", "new-key"):
        with pytest.raises(ConnectionResetError):
            await store.put(
                key, failing_after(data, 3 * cloud.part, 64 * KIB), content_type="x/y", user_metadata={}
            )
        assert await cloud.aborted(store, key)
    info, stream = await store.get("k")
    assert await collect(stream) == old and info.sha256 == sha(old)
    with pytest.raises(NotFound):
        await store.head("new-key")
    assert [o.key for o in (await store.list("", 100, "")).objects] == ["k"]


async def test_cancelled_upload_aborts(cloud: Cloud) -> None:
    store = await cloud.make(part_size_bytes=str(cloud.part))
    old = b"keep me"
    await put_bytes(store, "c", old)
    reached = asyncio.Event()
    data = pattern(5 * cloud.part, seed=5)
    task = asyncio.create_task(
        store.put(
            "c", stalling_after(data, 3 * cloud.part, reached, 64 * KIB), content_type="x/y", user_metadata={}
        )
    )
    await asyncio.wait_for(reached.wait(), 10)
    for _ in range(200):  # wait until parts really sit in the backend, so the abort has work to do
        if await cloud.staged(store, "c") >= 2:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("no part reached the backend")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await cloud.aborted(store, "c")
    info, stream = await store.get("c")
    assert await collect(stream) == old and info.sha256 == sha(old)


async def test_oversized_metadata_is_refused_before_writing(cloud: Cloud) -> None:
    store = await cloud.make()
    too_much = {f"k{i}": "v" * 1000 for i in range(cloud.metadata_entries_over_limit)}
    with pytest.raises(InvalidArgument) as err:
        await put_bytes(store, "m", b"x", user_metadata=too_much)
    assert err.value.field_violations[0][0] == "user_metadata"
    assert cloud.name in err.value.field_violations[0][1]
    with pytest.raises(NotFound):
        await store.head("m")


async def test_memory_stays_bounded_both_ways(cloud: Cloud) -> None:
    """Many parts, two in flight: the adapter holds a few parts, never the object."""
    part = max(cloud.part, MIB)
    store = await cloud.make(part_size_bytes=str(part), upload_concurrency="2", **cloud.read_options)
    size = 10 * part
    info, peak = await traced_peak(
        store.put("mem/big", generated(size, seed=9), content_type="x/y", user_metadata={})
    )
    assert info.size == size and info.sha256 == generated_sha(size, seed=9)
    # Each part in flight is held twice (ours + the HTTP stack's copy), plus the one filling
    # (about (2 * 2 + 1) parts), plus the SDK's own buffers.
    assert peak < 6 * part + 2 * MIB, peak

    async def drain() -> int:
        _, stream = await store.get("mem/big")
        return sum([len(c) async for c in stream])

    total, peak = await traced_peak(drain())
    assert total == size and peak < 4 * MIB + part // 2, peak
