"""The object-store contract: every ObjectStore adapter (backends.py) must pass all of it."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, MakotoError, NotFound
from services.storage.ports import ObjectInfo, ObjectStore

MiB = 1024 * 1024


async def chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def put(store: ObjectStore, key: str, data: bytes, **kw: object) -> ObjectInfo:
    kw.setdefault("content_type", "application/octet-stream")
    kw.setdefault("user_metadata", {})
    return await store.put(key, chunks([data] if data else []), **kw)  # type: ignore[arg-type]


async def read(
    store: ObjectStore, key: str, start: int = 0, length: int | None = None
) -> tuple[ObjectInfo, bytes]:
    info, stream = await store.get(key, start=start, length=length)
    out = bytearray()
    async for chunk in stream:
        out += chunk
    return info, bytes(out)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pattern(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


class Boom(Exception):
    pass


# -- basics --------------------------------------------------------------------------------


async def test_put_get_head_delete(object_store: ObjectStore) -> None:
    data = b"hello, makoto"
    info = await put(
        object_store,
        "docs/hello.txt",
        data,
        content_type="text/plain; charset=utf-8",
        user_metadata={"owner": "alice", "tag-1": "x"},
    )
    assert info.key == "docs/hello.txt"
    assert info.size == len(data)
    assert info.sha256 == sha(data)
    assert info.content_type == "text/plain; charset=utf-8"
    assert dict(info.user_metadata) == {"owner": "alice", "tag-1": "x"}
    assert info.etag
    assert info.created <= info.updated
    assert abs(info.updated - datetime.now(UTC)) < timedelta(minutes=5)

    got, body = await read(object_store, "docs/hello.txt")
    assert body == data
    assert (got.size, got.sha256, got.content_type) == (info.size, info.sha256, info.content_type)
    assert got.etag == info.etag
    assert dict(got.user_metadata) == {"owner": "alice", "tag-1": "x"}

    head = await object_store.head("docs/hello.txt")
    assert (head.key, head.size, head.sha256) == ("docs/hello.txt", len(data), sha(data))
    assert head.etag == info.etag
    assert dict(head.user_metadata) == {"owner": "alice", "tag-1": "x"}

    deleted = await object_store.delete("docs/hello.txt")
    assert deleted.size == len(data)
    with pytest.raises(NotFound):
        await object_store.head("docs/hello.txt")
    with pytest.raises(NotFound):
        await object_store.get("docs/hello.txt")
    with pytest.raises(NotFound):
        await object_store.delete("docs/hello.txt")


async def test_missing_object_is_not_found(object_store: ObjectStore) -> None:
    for call in (
        object_store.head("nope"),
        object_store.get("nope"),
        object_store.get("nope", start=3, length=2),
        object_store.delete("nope"),
    ):
        with pytest.raises(NotFound):
            await call


async def test_overwrite_replaces_content_and_etag(object_store: ObjectStore) -> None:
    first = await put(object_store, "k", b"version one", content_type="text/plain")
    second = await put(
        object_store,
        "k",
        b"v2 is longer than v1",
        content_type="application/json",
        user_metadata={"rev": "2"},
    )
    assert second.etag != first.etag
    assert second.size == len(b"v2 is longer than v1")
    info, body = await read(object_store, "k")
    assert body == b"v2 is longer than v1"
    assert info.content_type == "application/json"
    assert dict(info.user_metadata) == {"rev": "2"}
    page = await object_store.list("", 100, "")
    assert [o.key for o in page.objects] == ["k"]


async def test_if_none_match_refuses_existing_key(object_store: ObjectStore) -> None:
    created = await put(object_store, "once", b"first", if_none_match=True)
    assert created.size == 5
    with pytest.raises(AlreadyExists):
        await put(object_store, "once", b"second", if_none_match=True)
    info, body = await read(object_store, "once")
    assert body == b"first"
    assert info.etag == created.etag


async def test_empty_object(object_store: ObjectStore) -> None:
    info = await object_store.put("empty", chunks([]), content_type="text/plain", user_metadata={})
    assert (info.size, info.sha256) == (0, sha(b""))
    got, body = await read(object_store, "empty")
    assert body == b"" and got.size == 0
    _, body = await read(object_store, "empty", start=0)
    assert body == b""
    # empty chunks in the stream are harmless
    info = await object_store.put("empty2", chunks([b"", b"", b""]), content_type="x/y", user_metadata={})
    assert info.size == 0


# -- ranges --------------------------------------------------------------------------------


async def test_ranged_reads(object_store: ObjectStore) -> None:
    data = pattern(1000)
    await put(object_store, "r", data)
    cases = [(0, 10), (10, 90), (990, None), (995, 100), (0, None), (999, 1), (500, 500)]
    for start, length in cases:
        info, body = await read(object_store, "r", start=start, length=length)
        end = len(data) if length is None else min(len(data), start + length)
        assert body == data[start:end], (start, length)
        assert info.size == len(data)  # metadata describes the whole object
        assert info.sha256 == sha(data)


async def test_range_past_the_end_is_invalid(object_store: ObjectStore) -> None:
    await put(object_store, "r", b"0123456789")
    with pytest.raises(InvalidArgument):
        await object_store.get("r", start=11)


# -- large objects and atomicity ---------------------------------------------------------


async def test_multi_mib_streamed_object(object_store: ObjectStore) -> None:
    size = 12 * MiB + 12345
    data = pattern(size, seed=42)
    parts = [data[i : i + MiB] for i in range(0, size, MiB)]
    info = await object_store.put(
        "big/blob.bin", chunks(parts), content_type="application/octet-stream", user_metadata={}
    )
    assert info.size == size
    assert info.sha256 == sha(data)

    _, stream = await object_store.get("big/blob.bin")
    digest = hashlib.sha256()
    total = 0
    largest = 0
    async for chunk in stream:
        digest.update(chunk)
        total += len(chunk)
        largest = max(largest, len(chunk))
    assert total == size
    assert digest.hexdigest() == sha(data)
    assert largest <= 16 * MiB  # streamed, not one buffer
    # a range straddling an internal part/chunk boundary
    _, body = await read(object_store, "big/blob.bin", start=5 * MiB - 100, length=MiB + 200)
    assert body == data[5 * MiB - 100 : 6 * MiB + 100]


async def test_failed_upload_leaves_previous_version(object_store: ObjectStore) -> None:
    await put(object_store, "keep", b"the original")

    async def failing() -> AsyncIterator[bytes]:
        yield b"x" * MiB
        yield b"y" * MiB
        raise Boom("client went away")

    with pytest.raises(Boom):
        await object_store.put("keep", failing(), content_type="text/plain", user_metadata={})
    _, body = await read(object_store, "keep")
    assert body == b"the original"

    with pytest.raises(Boom):
        await object_store.put("never", failing(), content_type="text/plain", user_metadata={})
    with pytest.raises(NotFound):
        await object_store.head("never")
    assert [o.key for o in (await object_store.list("", 100, "")).objects] == ["keep"]


async def test_cancelled_upload_leaves_nothing(object_store: ObjectStore) -> None:
    await put(object_store, "keep", b"the original")
    sent = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"z" * MiB
        sent.set()
        await asyncio.Event().wait()  # never finishes
        yield b""

    for key in ("keep", "fresh"):
        sent.clear()
        task = asyncio.create_task(
            object_store.put(key, stalls(), content_type="text/plain", user_metadata={})
        )
        await asyncio.wait_for(sent.wait(), 10)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    _, body = await read(object_store, "keep")
    assert body == b"the original"
    with pytest.raises(NotFound):
        await object_store.head("fresh")


async def test_read_during_overwrite_is_never_torn(object_store: ObjectStore) -> None:
    old = pattern(3 * MiB, seed=1)
    new = pattern(3 * MiB, seed=2)
    await put(object_store, "hot", old)
    _, stream = await object_store.get("hot")
    it = aiter(stream)
    first = await anext(it)
    await put(object_store, "hot", new)
    rest = bytearray(first)
    try:
        async for chunk in it:
            rest += chunk
    except MakotoError:
        return  # refusing to continue is acceptable; mixing versions is not
    assert bytes(rest) == old
    _, body = await read(object_store, "hot")
    assert body == new


# -- keys and listing ----------------------------------------------------------------------

AWKWARD_KEYS = [
    "a",
    "a/b",
    "a/b/c",
    "a b/c d",
    "%2e%2e/literal-percent",
    "dots.../x.y",
    "é/ü/ß",
    "emoji/😀👨‍👩‍👧",
    "rtl/שלום/مرحبا",
    "x" * 1000,
]


async def test_awkward_keys_coexist(object_store: ObjectStore) -> None:
    for i, key in enumerate(AWKWARD_KEYS):
        await put(object_store, key, f"body {i}".encode())
    for i, key in enumerate(AWKWARD_KEYS):
        info, body = await read(object_store, key)
        assert body == f"body {i}".encode()
        assert info.key == key
    listed = [o.key for o in (await object_store.list("", 1000, "")).objects]
    assert listed == sorted(AWKWARD_KEYS, key=lambda k: k.encode())


async def test_list_is_byte_ordered_and_prefixed(object_store: ObjectStore) -> None:
    keys = ["B", "a", "é", "a/1", "ab", "a/2/x", "\uff5e", "\U0001f600", "Z", "0"]
    for key in keys:
        await put(object_store, key, key.encode())
    everything = await object_store.list("", 100, "")
    assert [o.key for o in everything.objects] == sorted(keys, key=lambda k: k.encode())
    assert everything.next_page_token == ""
    by_key = {o.key: o for o in everything.objects}
    assert by_key["é"].size == len("é".encode())
    assert by_key["é"].sha256 == sha("é".encode())

    assert [o.key for o in (await object_store.list("a", 100, "")).objects] == ["a", "a/1", "a/2/x", "ab"]
    assert [o.key for o in (await object_store.list("a/", 100, "")).objects] == ["a/1", "a/2/x"]
    none = await object_store.list("zzz", 100, "")
    assert list(none.objects) == [] and none.next_page_token == ""


async def test_list_pagination_is_stable(object_store: ObjectStore) -> None:
    original = [f"p/{i:03d}" for i in range(0, 50, 2)]  # 25 keys, gaps between them
    for key in original:
        await put(object_store, key, b".")
    await put(object_store, "q/outside", b".")

    first = await object_store.list("p/", 4, "")
    assert [o.key for o in first.objects] == original[:4]
    assert first.next_page_token
    again = await object_store.list("p/", 4, first.next_page_token)
    assert [o.key for o in again.objects] == original[4:8]  # a token can be replayed

    # Writes between pages: one before the cursor, one after it, one deletion ahead.
    await put(object_store, "p/001", b".")
    await put(object_store, "p/999", b".")
    await object_store.delete("p/020")

    seen = [o.key for o in first.objects]
    token = first.next_page_token
    pages = 1
    while token:
        page = await object_store.list("p/", 4, token)
        assert 0 < len(page.objects) <= 4
        seen += [o.key for o in page.objects]
        token = page.next_page_token
        pages += 1
        assert pages < 50
    expected = [k for k in original if k != "p/020"] + ["p/999"]
    assert seen == expected  # nothing twice, nothing skipped, the earlier insert not revisited


# -- metadata and capabilities -------------------------------------------------------------


async def test_user_metadata_unicode_values(object_store: ObjectStore) -> None:
    meta = {"title": "Ünïcödé \u2013 日本語 😀", "empty": "", "spaces": "  a  b  "}
    info = await put(object_store, "m", b"m", user_metadata=meta)
    assert dict(info.user_metadata) == meta
    assert dict((await object_store.head("m")).user_metadata) == meta
    assert dict((await object_store.list("", 10, "")).objects[0].user_metadata) == meta


async def test_sign_url_follows_capability(object_store: ObjectStore) -> None:
    data = b"signed content"
    await put(object_store, "s/file.txt", data, content_type="text/plain")
    if not object_store.capabilities.sign_url:
        with pytest.raises(FailedPrecondition) as caught:
            await object_store.sign_url("s/file.txt", "GET", timedelta(minutes=5))
        assert "sign_url" in caught.value.message
        return
    before = datetime.now(UTC)
    signed = await object_store.sign_url("s/file.txt", "GET", timedelta(minutes=5))
    assert before + timedelta(minutes=4) < signed.expires <= before + timedelta(minutes=5, seconds=5)
    async with httpx.AsyncClient() as client:
        response = await client.get(signed.url)
    assert response.status_code == 200
    assert response.content == data
    put_url = await object_store.sign_url("s/upload.txt", "PUT", timedelta(minutes=5))
    assert put_url.url and put_url.url != signed.url


async def test_reconciliation_snapshot_is_what_the_backend_lists(object_store: ObjectStore) -> None:
    """Storage is billed from this snapshot (services/storage/reconcile.py): the bytes of the
    objects that exist now, whatever writes, overwrites, deletes and failed uploads came before."""
    from services.storage.reconcile import snapshot

    await put(object_store, "snap/a", pattern(1000))
    await put(object_store, "snap/b", pattern(5000))
    await put(object_store, "snap/a", pattern(300))  # overwrite: only the new size counts
    await put(object_store, "snap/c", pattern(700))
    await object_store.delete("snap/c")

    async def failing() -> AsyncIterator[bytes]:
        yield pattern(4096)
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await object_store.put("snap/d", failing(), content_type="x/y", user_metadata={})
    stored, _ = await snapshot(object_store)
    assert stored == 300 + 5000
