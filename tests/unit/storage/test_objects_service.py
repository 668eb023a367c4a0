"""Object RPCs end to end through a real gRPC server: streaming, ranges, HttpBody, metering."""

from __future__ import annotations

import hashlib
import os
import random
import tracemalloc
from collections.abc import AsyncIterator

import grpc
import psutil
import pytest
from google.api import httpbody_pb2
from google.protobuf import duration_pb2
from makoto.storage.v1 import objects_pb2

from tests.support import client_stream
from tests.unit.storage.conftest import Storage, bad_request, error_info

MiB = 1024 * 1024


def header(key: str, tenant: str = "acme", **kw: object) -> objects_pb2.UploadObjectRequest:
    return objects_pb2.UploadObjectRequest(
        header=objects_pb2.UploadObjectHeader(tenant_id=tenant, key=key, **kw)
    )


def chunk(data: bytes) -> objects_pb2.UploadObjectRequest:
    return objects_pb2.UploadObjectRequest(chunk=data)


async def upload(
    s: Storage, key: str, data: bytes, tenant: str = "acme", **kw: object
) -> objects_pb2.ObjectMetadata:
    parts = [chunk(data[i : i + MiB]) for i in range(0, len(data), MiB)]
    return await client_stream(s.stub.UploadObject, [header(key, tenant, **kw), *parts], s.md(tenant))


async def download(
    s: Storage, key: str, tenant: str = "acme", start: int = 0, length: int = 0
) -> tuple[objects_pb2.ObjectMetadata, bytes, list[int]]:
    call = s.stub.DownloadObject(
        objects_pb2.DownloadObjectRequest(tenant_id=tenant, key=key, range_start=start, range_length=length),
        metadata=s.md(tenant),
    )
    meta = None
    body = bytearray()
    sizes = []
    async for message in call:
        if message.HasField("metadata"):
            assert meta is None and not body, "metadata must come first, once"
            meta = message.metadata
        else:
            assert meta is not None, "a chunk arrived before the metadata"
            body += message.chunk
            sizes.append(len(message.chunk))
    assert meta is not None
    return meta, bytes(body), sizes


async def test_upload_and_download_in_chunks(storage: Storage) -> None:
    data = random.Random(1).randbytes(3 * MiB + 777)
    meta = await upload(
        storage, "docs/report.bin", data, content_type="application/x-test", user_metadata={"a": "1"}
    )
    assert meta.key == "docs/report.bin"
    assert meta.size_bytes == len(data)
    assert meta.sha256 == hashlib.sha256(data).hexdigest()
    assert meta.content_type == "application/x-test"
    assert dict(meta.user_metadata) == {"a": "1"}
    assert meta.etag and meta.create_time.seconds > 0

    got, body, sizes = await download(storage, "docs/report.bin")
    assert body == data
    assert got.sha256 == meta.sha256 and got.etag == meta.etag
    assert max(sizes) <= 256 * 1024
    assert len(sizes) == -(-len(data) // (256 * 1024))

    _, part, _ = await download(storage, "docs/report.bin", start=MiB - 5, length=10)
    assert part == data[MiB - 5 : MiB + 5]
    _, tail, _ = await download(storage, "docs/report.bin", start=len(data) - 3)
    assert tail == data[-3:]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await download(storage, "docs/report.bin", start=len(data) + 1)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    head = await storage.stub.GetObjectMetadata(
        objects_pb2.GetObjectMetadataRequest(tenant_id="acme", key="docs/report.bin"), metadata=storage.md()
    )
    assert head.size_bytes == len(data) and head.sha256 == meta.sha256

    await storage.stub.DeleteObject(
        objects_pb2.DeleteObjectRequest(tenant_id="acme", key="docs/report.bin"), metadata=storage.md()
    )
    for call in (
        storage.stub.GetObjectMetadata(
            objects_pb2.GetObjectMetadataRequest(tenant_id="acme", key="docs/report.bin"),
            metadata=storage.md(),
        ),
        storage.stub.DeleteObject(
            objects_pb2.DeleteObjectRequest(tenant_id="acme", key="docs/report.bin"), metadata=storage.md()
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await download(storage, "docs/report.bin")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_64_mib_object_streams_with_bounded_server_memory(storage: Storage) -> None:
    size = 64 * MiB
    block = random.Random(64).randbytes(MiB)

    def piece(i: int) -> bytes:
        return i.to_bytes(8, "big") + block[8:]

    expected = hashlib.sha256()
    for i in range(size // MiB):
        expected.update(piece(i))

    async def requests() -> AsyncIterator[objects_pb2.UploadObjectRequest]:
        yield header("big/64mib.bin")
        for i in range(size // MiB):
            yield chunk(piece(i))

    process = psutil.Process()
    rss_before = process.memory_info().rss
    tracemalloc.start()
    try:
        meta = await storage.stub.UploadObject(requests(), metadata=storage.md())
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.sha256()
        total = 0
        call = storage.stub.DownloadObject(
            objects_pb2.DownloadObjectRequest(tenant_id="acme", key="big/64mib.bin"), metadata=storage.md()
        )
        async for message in call:
            if not message.HasField("metadata"):
                digest.update(message.chunk)
                total += len(message.chunk)
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = process.memory_info().rss - rss_before
    assert meta.size_bytes == size and meta.sha256 == expected.hexdigest()
    assert total == size and digest.hexdigest() == expected.hexdigest()
    # Client and server share this process: whatever both hold at once stays far below 64 MiB.
    assert upload_peak < 16 * MiB, upload_peak
    assert download_peak < 16 * MiB, download_peak
    assert rss_growth < 48 * MiB, rss_growth
    await storage.stub.DeleteObject(
        objects_pb2.DeleteObjectRequest(tenant_id="acme", key="big/64mib.bin"), metadata=storage.md()
    )


async def test_upload_framing_errors(storage: Storage) -> None:
    async def expect_invalid(messages: list[objects_pb2.UploadObjectRequest]) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client_stream(storage.stub.UploadObject, messages, storage.md())
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        return err.value

    err = await expect_invalid([chunk(b"early"), header("framing/a")])
    assert "header" in bad_request(err)
    err = await expect_invalid([header("framing/b"), chunk(b"x" * 1000), header("framing/b"), chunk(b"y")])
    assert "header" in bad_request(err)
    await expect_invalid([])
    for key in ("framing/a", "framing/b"):
        with pytest.raises(grpc.aio.AioRpcError) as nf:
            await storage.stub.GetObjectMetadata(
                objects_pb2.GetObjectMetadataRequest(tenant_id="acme", key=key), metadata=storage.md()
            )
        assert nf.value.code() == grpc.StatusCode.NOT_FOUND


async def test_expected_sha256_and_if_none_match(storage: Storage) -> None:
    data = b"checked content"
    good = hashlib.sha256(data).hexdigest()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await upload(storage, "sum/x", data, expected_sha256="0" * 64)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err.value).reason == "CHECKSUM_MISMATCH"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await download(storage, "sum/x")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    meta = await upload(storage, "sum/x", data, expected_sha256=good, if_none_match=True)
    assert meta.sha256 == good
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await upload(storage, "sum/x", b"other", if_none_match=True)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    _, body, _ = await download(storage, "sum/x")
    assert body == data


async def test_http_body_put_and_streamed_get(storage: Storage) -> None:
    data = bytes(range(256)) * 4096 + b"\x00tail"  # every byte value, > 1 MiB
    meta = await storage.stub.PutObjectContent(
        objects_pb2.PutObjectContentRequest(
            tenant_id="acme",
            key="rest/raw.bin",
            content=httpbody_pb2.HttpBody(content_type="image/png", data=data),
        ),
        metadata=storage.md(),
    )
    assert meta.size_bytes == len(data) and meta.content_type == "image/png"
    assert meta.sha256 == hashlib.sha256(data).hexdigest()
    bodies = [
        b
        async for b in storage.stub.GetObjectContent(
            objects_pb2.GetObjectContentRequest(tenant_id="acme", key="rest/raw.bin"), metadata=storage.md()
        )
    ]
    assert bodies[0].content_type == "image/png"
    assert all(b.content_type == "" for b in bodies[1:])
    assert all(len(b.data) <= 256 * 1024 for b in bodies)
    assert b"".join(b.data for b in bodies) == data

    # an empty body still answers one message carrying the content type
    await storage.stub.PutObjectContent(
        objects_pb2.PutObjectContentRequest(
            tenant_id="acme", key="rest/empty", content=httpbody_pb2.HttpBody(content_type="text/plain")
        ),
        metadata=storage.md(),
    )
    bodies = [
        b
        async for b in storage.stub.GetObjectContent(
            objects_pb2.GetObjectContentRequest(tenant_id="acme", key="rest/empty"), metadata=storage.md()
        )
    ]
    assert [(b.content_type, b.data) for b in bodies] == [("text/plain", b"")]

    # no content type given: the default
    meta = await storage.stub.PutObjectContent(
        objects_pb2.PutObjectContentRequest(
            tenant_id="acme", key="rest/untyped", content=httpbody_pb2.HttpBody(data=b"x")
        ),
        metadata=storage.md(),
    )
    assert meta.content_type == "application/octet-stream"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await storage.stub.PutObjectContent(
            objects_pb2.PutObjectContentRequest(
                tenant_id="acme",
                key="rest/untyped",
                content=httpbody_pb2.HttpBody(data=b"y"),
                if_none_match=True,
            ),
            metadata=storage.md(),
        )
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_list_objects_pages(storage: Storage) -> None:
    for i in range(105):
        await storage.stub.PutObjectContent(
            objects_pb2.PutObjectContentRequest(
                tenant_id="globex", key=f"list/{i:03d}", content=httpbody_pb2.HttpBody(data=b".")
            ),
            metadata=storage.md("globex"),
        )
    first = await storage.stub.ListObjects(
        objects_pb2.ListObjectsRequest(tenant_id="globex", prefix="list/"), metadata=storage.md("globex")
    )
    assert len(first.objects) == 100  # the default page size
    assert first.objects[0].key == "list/000" and first.next_page_token
    second = await storage.stub.ListObjects(
        objects_pb2.ListObjectsRequest(tenant_id="globex", prefix="list/", page_token=first.next_page_token),
        metadata=storage.md("globex"),
    )
    assert [o.key for o in second.objects] == [f"list/{i:03d}" for i in range(100, 105)]
    assert second.next_page_token == ""
    small = await storage.stub.ListObjects(
        objects_pb2.ListObjectsRequest(tenant_id="globex", prefix="list/", page_size=7),
        metadata=storage.md("globex"),
    )
    assert len(small.objects) == 7
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await storage.stub.ListObjects(
            objects_pb2.ListObjectsRequest(
                tenant_id="globex", prefix="other/", page_token=first.next_page_token
            ),
            metadata=storage.md("globex"),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_sign_url_names_missing_capability(storage: Storage) -> None:
    await upload(storage, "sign/me", b"x")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await storage.stub.SignObjectUrl(
            objects_pb2.SignObjectUrlRequest(
                tenant_id="acme",
                key="sign/me",
                method=objects_pb2.SIGNED_URL_METHOD_GET,
                ttl=duration_pb2.Duration(seconds=60),
            ),
            metadata=storage.md(),
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err.value)
    assert info.reason == "CAPABILITY_UNSUPPORTED"
    assert info.metadata["capability"] == "sign_url" and info.metadata["backend"] == "local"
    assert "sign_url" in (err.value.details() or "")


async def test_storage_bytes_deltas(storage: Storage) -> None:
    tenant = "meter-co"
    rec = storage.recorder

    async def put(key: str, size: int, **kw: object) -> None:
        await storage.stub.PutObjectContent(
            objects_pb2.PutObjectContentRequest(
                tenant_id=tenant, key=key, content=httpbody_pb2.HttpBody(data=b"a" * size), **kw
            ),
            metadata=storage.md(tenant),
        )

    await put("m/one", 100)
    assert rec.storage(tenant) == [(100, "local")]
    await put("m/one", 40)  # overwrite: new - old
    assert rec.storage(tenant)[-1] == (-60, "local")
    await put("m/one", 40)  # same size: no event
    assert len(rec.storage(tenant)) == 2
    with pytest.raises(grpc.aio.AioRpcError):
        await put("m/one", 999, if_none_match=True)
    with pytest.raises(grpc.aio.AioRpcError):
        await upload(storage, "m/two", b"z" * 500, tenant=tenant, expected_sha256="0" * 64)
    assert len(rec.storage(tenant)) == 2  # failed writes change nothing
    await upload(storage, "m/two", b"z" * 3 * MiB, tenant=tenant)
    assert rec.storage(tenant)[-1] == (3 * MiB, "local")
    await storage.stub.DeleteObject(
        objects_pb2.DeleteObjectRequest(tenant_id=tenant, key="m/one"), metadata=storage.md(tenant)
    )
    assert rec.storage(tenant)[-1] == (-40, "local")
    assert sum(v for v, _ in rec.storage(tenant)) == 3 * MiB  # what is stored now
    calls = [e for e in rec.events if e["meter"] == "api_calls" and e["tenant"] == tenant]
    assert calls and all(e["service"] == "storage" for e in calls)


async def test_no_temp_files_linger(storage: Storage) -> None:
    await upload(storage, "tmp/check", b"x" * (2 * MiB))
    with pytest.raises(grpc.aio.AioRpcError):
        await upload(storage, "tmp/check", b"y" * (2 * MiB), expected_sha256="1" * 64)
    tmp = storage.tenant_root("acme") / "objects" / "tmp"
    assert os.listdir(tmp) == []
