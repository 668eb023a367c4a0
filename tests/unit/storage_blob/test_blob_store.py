"""AzureBlobObjectStore against Azurite: streaming, staged blocks, conditions, listing, SAS, lifecycle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.storage.adapters.azure_blob import AzureBlobObjectStore
from services.storage.ports import ObjectInfo
from tests.contract.emulators import Azurite
from tests.unit.storage_blob.conftest import MakeStore
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
PART = str(256 * KIB)  # small blocks so a few MiB exercise staged-block uploads


async def put_bytes(
    store: AzureBlobObjectStore,
    key: str,
    data: bytes,
    *,
    content_type: str = "application/x-test",
    user_metadata: dict[str, str] | None = None,
    if_none_match: bool = False,
) -> ObjectInfo:
    return await store.put(
        key,
        chunked(data, 64 * KIB),
        content_type=content_type,
        user_metadata=user_metadata or {},
        if_none_match=if_none_match,
    )


async def block_lists(store: AzureBlobObjectStore, key: str) -> tuple[int, int]:
    """(committed, uncommitted) block counts of a blob."""
    blocks = await store.container.get_blob_client(key).get_block_list("all")
    return len(blocks[0]), len(blocks[1])


async def test_small_object_round_trip(make_store: MakeStore) -> None:
    store = await make_store()
    data = b"hello makoto"
    meta = {
        "owner": "r\u00e9mi \u65e5\u672c",
        "empty": "",
        "0-starts-with_digit": " x ",
        "a_b": "=?UTF-8?B?x?=",
    }
    info = await store.put("docs/hello.txt", chunked(data), content_type="text/plain", user_metadata=meta)
    assert (info.size, info.sha256, info.content_type) == (len(data), sha(data), "text/plain")
    assert dict(info.user_metadata) == meta
    assert await store.head("docs/hello.txt") == info
    got, stream = await store.get("docs/hello.txt")
    assert got == info and await collect(stream) == data


async def test_staged_block_upload_streams_large_object(make_store: MakeStore) -> None:
    store = await make_store(
        part_size_bytes=PART, upload_concurrency="3", download_chunk_bytes=str(512 * KIB)
    )
    data = pattern(3 * MIB + 123, seed=11)
    info = await put_bytes(store, "big/blob.bin", data, user_metadata={"kind": "big"})
    head = await store.head("big/blob.bin")
    assert head == info
    assert (head.size, head.sha256, dict(head.user_metadata)) == (len(data), sha(data), {"kind": "big"})
    assert await block_lists(store, "big/blob.bin") == (13, 0)  # 12 full blocks + the tail, all committed
    _, stream = await store.get("big/blob.bin")
    chunks = [c async for c in stream]
    assert max(len(c) for c in chunks) <= 512 * KIB and b"".join(chunks) == data


async def test_exactly_one_block_and_empty_object(make_store: MakeStore) -> None:
    store = await make_store(part_size_bytes=PART)
    one = pattern(256 * KIB, seed=12)
    assert (await put_bytes(store, "one", one)).sha256 == sha(one)
    assert await block_lists(store, "one") == (0, 0)  # a single Put Blob, no blocks staged
    _, stream = await store.get("one")
    assert await collect(stream) == one
    empty = await put_bytes(store, "empty", b"")
    assert (empty.size, empty.sha256) == (0, sha(b""))
    info, stream = await store.get("empty")
    assert info.size == 0 and await collect(stream) == b""
    _, stream = await store.get("empty", start=0, length=10)
    assert await collect(stream) == b""


async def test_ranged_reads(make_store: MakeStore) -> None:
    store = await make_store(download_chunk_bytes=str(64 * KIB))
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


async def test_create_only_writes(make_store: MakeStore) -> None:
    store = await make_store(part_size_bytes=PART)
    assert store.capabilities.if_none_match
    await put_bytes(store, "once", b"first", if_none_match=True)
    with pytest.raises(AlreadyExists):
        await put_bytes(store, "once", b"second", if_none_match=True)
    big = pattern(1 * MIB, seed=14)
    with pytest.raises(AlreadyExists):  # the block path sends If-None-Match on Put Block List
        await put_bytes(store, "once", big, if_none_match=True)
    _, stream = await store.get("once")
    assert await collect(stream) == b"first"
    assert (await put_bytes(store, "fresh-big", big, if_none_match=True)).sha256 == sha(big)


async def test_failed_upload_never_commits(make_store: MakeStore) -> None:
    # One block in flight at a time: every block before the failing one is surely staged.
    store = await make_store(part_size_bytes=PART, upload_concurrency="1")
    old = b"old version"
    await put_bytes(store, "k", old)
    data = pattern(2 * MIB, seed=15)
    for key in ("k", "new-key"):
        with pytest.raises(ConnectionResetError):
            await store.put(key, failing_after(data, MIB, 64 * KIB), content_type="x/y", user_metadata={})
    for key in ("k", "new-key"):
        committed, uncommitted = await block_lists(store, key)
        assert committed == 0 and uncommitted >= 2  # staged blocks exist but were never committed
    info, stream = await store.get("k")
    assert await collect(stream) == old and info.sha256 == sha(old)
    with pytest.raises(NotFound):
        await store.head("new-key")
    assert [o.key for o in (await store.list("", 100, "")).objects] == ["k"]


async def test_cancelled_upload_never_commits(make_store: MakeStore) -> None:
    store = await make_store(part_size_bytes=PART)
    old = b"keep me"
    await put_bytes(store, "c", old)
    reached = asyncio.Event()
    data = pattern(4 * MIB, seed=16)
    task = asyncio.create_task(
        store.put("c", stalling_after(data, MIB, reached, 64 * KIB), content_type="x/y", user_metadata={})
    )
    await asyncio.wait_for(reached.wait(), 10)
    for _ in range(200):
        if (await block_lists(store, "c"))[1] >= 3:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("no block was staged")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    info, stream = await store.get("c")
    assert await collect(stream) == old and info.sha256 == sha(old)
    assert [o.key for o in (await store.list("", 100, "")).objects] == ["c"]


async def test_list_prefix_pagination(make_store: MakeStore) -> None:
    store = await make_store()
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
    first = await store.list("p/", 3, "")
    again = await store.list("p/", 3, first.next_page_token)
    assert [o.key for o in again.objects] == expected[3:6]
    with pytest.raises(InvalidArgument):
        await store.list("q/", 3, first.next_page_token)
    with pytest.raises(InvalidArgument):
        await store.list("p/", 3, "not-a-token!")


async def test_delete(make_store: MakeStore) -> None:
    store = await make_store()
    put = await put_bytes(store, "d/x", b"12345")
    deleted = await store.delete("d/x")
    assert deleted.size == 5 and deleted.etag == put.etag
    for op in (store.delete("d/x"), store.head("d/x"), store.get("d/x")):
        with pytest.raises(NotFound):
            await op


async def test_sas_urls_get_and_put(make_store: MakeStore) -> None:
    store = await make_store()
    assert store.capabilities.sign_url
    await put_bytes(store, "s/file name.bin", b"signed bytes")
    before = datetime.now(UTC)
    signed = await store.sign_url("s/file name.bin", "GET", timedelta(minutes=5))
    assert before + timedelta(minutes=4) < signed.expires <= datetime.now(UTC) + timedelta(minutes=5)
    async with httpx.AsyncClient() as http:
        resp = await http.get(signed.url)
        assert resp.status_code == 200 and resp.content == b"signed bytes"
        # The read SAS does not allow writing, and a tampered signature is refused (Azurite enforces SAS).
        assert (
            await http.put(signed.url, content=b"x", headers={"x-ms-blob-type": "BlockBlob"})
        ).status_code == 403
        assert (await http.get(signed.url.replace("sig=", "sig=AA"))).status_code == 403
        put_url = await store.sign_url("s/uploaded.bin", "PUT", timedelta(seconds=60))
        resp = await http.put(put_url.url, content=b"via sas put", headers={"x-ms-blob-type": "BlockBlob"})
        assert resp.status_code == 201
    _, stream = await store.get("s/uploaded.bin")
    assert await collect(stream) == b"via sas put"


async def test_sas_only_credential_cannot_sign(make_store: MakeStore, azurite: Azurite) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    owner = await make_store()
    sas = generate_container_sas(
        azurite.account,
        owner.cfg.container,
        account_key=azurite.key,
        permission=ContainerSasPermissions(read=True, write=True, create=True, list=True, delete=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    from tests.unit.storage_blob.conftest import blob_store

    store = blob_store(owner.cfg.tenant_id, azurite, {"sas_token": sas})
    try:
        assert not store.capabilities.sign_url
        await put_bytes(store, "via-sas", b"written with a SAS")  # the SAS still reads and writes
        assert (await store.head("via-sas")).size == len(b"written with a SAS")
        with pytest.raises(FailedPrecondition) as err:
            await store.sign_url("via-sas", "GET", timedelta(minutes=1))
        assert err.value.metadata["capability"] == "sign_url" and "sign_url" in err.value.message
        assert sas not in err.value.message
    finally:
        await store.close()


async def test_connection_string_credential(make_store: MakeStore, azurite: Azurite) -> None:
    store = await make_store(credentials={"connection_string": azurite.connection_string})
    assert store.capabilities.sign_url and store.cfg.account_name == azurite.account
    await put_bytes(store, "cs", b"ok")
    assert (await store.head("cs")).size == 2


async def test_provision_and_deprovision_are_idempotent(make_store: MakeStore) -> None:
    store = await make_store(provision=False)
    assert store.cfg.container == f"{store.cfg.tenant_id}-assets"
    with pytest.raises(FailedPrecondition):  # container not there yet: a binding problem
        await put_bytes(store, "x", b"1")
    await store.provision()
    await store.provision()
    names = [c.name async for c in store.service.list_containers()]
    assert store.cfg.container in names
    await put_bytes(store, "x", b"1")
    await store.deprovision()
    await store.deprovision()
    names = [c.name async for c in store.service.list_containers()]
    assert store.cfg.container not in names


async def test_oversized_metadata_is_refused_before_writing(make_store: MakeStore) -> None:
    store = await make_store()
    with pytest.raises(InvalidArgument) as err:
        await put_bytes(store, "m", b"x", user_metadata={f"k{i}": "v" * 1000 for i in range(9)})
    assert err.value.field_violations[0][0] == "user_metadata"
    with pytest.raises(NotFound):
        await store.head("m")


async def test_memory_stays_bounded_both_ways(make_store: MakeStore) -> None:
    """24 MiB through 1 MiB blocks, two in flight; downloads in 512 KiB ranges."""
    store = await make_store(
        part_size_bytes=str(MIB), upload_concurrency="2", download_chunk_bytes=str(512 * KIB)
    )
    size = 24 * MIB
    info, peak = await traced_peak(
        store.put("mem/big", generated(size, seed=8), content_type="x/y", user_metadata={})
    )
    assert info.size == size and info.sha256 == generated_sha(size, seed=8)
    assert peak < 8 * MIB, peak  # about (2 * 2 + 1) x 1 MiB + the 1 MiB chunks, not 24 MiB

    async def drain() -> int:
        _, stream = await store.get("mem/big")
        return sum([len(c) async for c in stream])

    total, peak = await traced_peak(drain())
    assert total == size and peak < 4 * MIB, peak
