"""Storage limits through a real StorageService (local backends) with the machine's Redis as the
shared store: object size limit, stored-bytes quota, and pages bounded by bytes."""

from __future__ import annotations

import grpc
import pytest
from makoto.storage.v1 import items_pb2, objects_pb2

from services.common.limits.model import Limits
from tests.support import client_stream
from tests.unit.storage.conftest import Storage, error_info
from tests.unit.storage.test_objects_service import chunk, header

pytestmark = pytest.mark.timeout(120)

KiB = 1024


async def refused(coro: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await coro  # type: ignore[misc]
    return caught.value


async def upload(s: Storage, tenant: str, key: str, data: bytes, **kw: object) -> objects_pb2.ObjectMetadata:
    parts = [chunk(data[i : i + 64 * KiB]) for i in range(0, len(data), 64 * KiB)]
    return await client_stream(s.stub.UploadObject, [header(key, tenant, **kw), *parts], s.md(tenant))


async def exists(s: Storage, tenant: str, key: str) -> bool:
    try:
        await s.stub.GetObjectMetadata(
            objects_pb2.GetObjectMetadataRequest(tenant_id=tenant, key=key), metadata=s.md(tenant)
        )
        return True
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND
        return False


def files_under(s: Storage, tenant: str) -> list[str]:
    root = s.tenant_root(tenant)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_an_object_over_the_size_limit_is_refused_and_leaves_nothing(storage: Storage) -> None:
    tenant = "acme"
    storage.limits.table[tenant] = Limits(max_object_bytes=100 * KiB)
    try:
        await upload(storage, tenant, "quota/warm.bin", b"w")  # the tenant's store exists
        before_files = files_under(storage, tenant)
        before_events = len(storage.recorder.storage(tenant))
        err = await refused(upload(storage, tenant, "quota/too-big.bin", b"x" * (300 * KiB)))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(err).reason == "OBJECT_TOO_LARGE"
        assert not await exists(storage, tenant, "quota/too-big.bin")
        assert files_under(storage, tenant) == before_files  # no blob, no temp file left behind
        assert len(storage.recorder.storage(tenant)) == before_events  # nothing billed

        # Declared up front: refused before any content is sent.
        call = storage.stub.UploadObject(metadata=storage.md(tenant))
        await call.write(header("quota/declared.bin", tenant, content_length=10**9))
        err = await refused(call)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(err).reason == "OBJECT_TOO_LARGE"

        # The REST-shaped single-message put is checked the same way.
        err = await refused(
            storage.stub.PutObjectContent(
                objects_pb2.PutObjectContentRequest(
                    tenant_id=tenant, key="quota/put.bin", content={"data": b"y" * (101 * KiB)}
                ),
                metadata=storage.md(tenant),
            )
        )
        assert error_info(err).reason == "OBJECT_TOO_LARGE"
        # Under the limit still works.
        meta = await upload(storage, tenant, "quota/fits.bin", b"z" * (100 * KiB))
        assert meta.size_bytes == 100 * KiB
    finally:
        storage.limits.table.pop(tenant, None)


async def test_declared_length_must_match(storage: Storage) -> None:
    err = await refused(upload(storage, "acme", "quota/liar.bin", b"a" * 1000, content_length=999))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not await exists(storage, "acme", "quota/liar.bin")
    err = await refused(upload(storage, "acme", "quota/liar2.bin", b"a" * 1000, content_length=1001))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not await exists(storage, "acme", "quota/liar2.bin")
    meta = await upload(storage, "acme", "quota/honest.bin", b"a" * 1000, content_length=1000)
    assert meta.size_bytes == 1000


async def test_the_stored_bytes_quota_is_per_tenant(storage: Storage) -> None:
    tenant, other = "meter-co", "globex"
    storage.limits.table[tenant] = Limits(storage_quota_bytes=500 * KiB)
    storage.limits.table[other] = Limits(storage_quota_bytes=500 * KiB)
    try:
        await upload(storage, tenant, "q/a.bin", b"a" * (300 * KiB))
        before_events = len(storage.recorder.storage(tenant))
        err = await refused(upload(storage, tenant, "q/b.bin", b"b" * (300 * KiB)))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        info = error_info(err)
        assert info.reason == "STORAGE_QUOTA_EXCEEDED" and info.metadata["quota_bytes"] == str(500 * KiB)
        assert not await exists(storage, tenant, "q/b.bin")
        assert len(storage.recorder.storage(tenant)) == before_events
        # Replacing an object counts only the difference.
        await upload(storage, tenant, "q/a.bin", b"c" * (450 * KiB))
        # The other tenant's quota is its own: exhausting this one changes nothing there.
        await upload(storage, other, "q/b.bin", b"b" * (300 * KiB))
        # Deleting frees quota.
        await storage.stub.DeleteObject(
            objects_pb2.DeleteObjectRequest(tenant_id=tenant, key="q/a.bin"), metadata=storage.md(tenant)
        )
        await upload(storage, tenant, "q/b.bin", b"b" * (300 * KiB))
    finally:
        storage.limits.table.pop(tenant, None)
        storage.limits.table.pop(other, None)


def big_item(sk: str, size: int) -> items_pb2.Item:
    return items_pb2.Item(
        collection="big",
        partition_key="p",
        sort_key=sk,
        attributes={"blob": items_pb2.AttributeValue(string_value="q" * size)},
    )


async def test_a_page_of_large_items_is_cut_by_bytes_with_a_token(storage: Storage) -> None:
    md = storage.md("globex")
    keys = [f"k{i:02d}" for i in range(24)]
    for sk in keys:
        await storage.stub.PutItem(
            items_pb2.PutItemRequest(tenant_id="globex", item=big_item(sk, 390 * KiB)), metadata=md
        )
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await storage.stub.QueryItems(
            items_pb2.QueryItemsRequest(
                tenant_id="globex", collection="big", partition_key="p", page_size=100, page_token=token
            ),
            metadata=md,
        )
        pages += 1
        assert 0 < len(page.items) < 24 and page.ByteSize() <= 4 * 1024 * KiB + 64 * KiB
        seen += [i.sort_key for i in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == keys and pages >= 3  # every item exactly once, in order
    err = await refused(
        storage.stub.BatchGetItems(
            items_pb2.BatchGetItemsRequest(
                tenant_id="globex",
                keys=[items_pb2.ItemKey(collection="big", partition_key="p", sort_key=k) for k in keys],
            ),
            metadata=md,
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err).reason == "RESPONSE_TOO_LARGE"
