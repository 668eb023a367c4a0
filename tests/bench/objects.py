"""Object transfers: through StorageService over gRPC, and the baselines (raw disk, direct SDK).

Every transfer is timed from its first byte sent to its last byte received, on one client, with
the storage server's RSS sampled meanwhile (service paths only). Uploads are checked by the
SHA-256 the service reports, downloads by every chunk's index stamp and the total length."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from makoto.storage.v1 import objects_pb2, storage_service_pb2_grpc

from tests.bench.memory import PeakRss
from tests.bench.payload import AsyncReader, MiB, Payload

# Same part sizes and concurrency as the adapters' defaults, so a baseline does the same work.
S3_PART = 8 * MiB  # services/storage/adapters/s3: part_size_bytes default
BLOB_BLOCK = 8 * MiB  # services/storage/adapters/azure_blob: part_size_bytes default
BLOB_GET_CHUNK = 4 * MiB  # azure_blob: download_chunk_bytes default
UPLOAD_CONCURRENCY = 4  # both adapters' upload_concurrency default


@dataclass(frozen=True)
class Transfer:
    size: int
    seconds: float
    rss_growth: int | None = None  # bytes above the server's RSS just before, at the peak
    rss_peak: int | None = None  # the server's RSS at the peak

    @property
    def mib_s(self) -> float:
        return self.size / MiB / self.seconds


async def timed(size: int, body: Callable[[], Awaitable[None]], server_pid: int | None = None) -> Transfer:
    if server_pid is None:
        t0 = time.perf_counter()
        await body()
        return Transfer(size, time.perf_counter() - t0)
    await asyncio.sleep(0.5)  # let the server settle before taking its baseline
    with PeakRss(server_pid) as rss:
        t0 = time.perf_counter()
        await body()
        seconds = time.perf_counter() - t0
    return Transfer(size, seconds, rss.growth, rss.peak)


# -- StorageService (gRPC, direct to the storage port) ---------------------------------------


class ServiceObjects:
    def __init__(
        self, stub: storage_service_pb2_grpc.StorageServiceStub, metadata: Any, tenant_id: str
    ) -> None:
        self._stub = stub
        self._md = metadata
        self._tenant = tenant_id

    async def upload(self, key: str, payload: Payload) -> None:
        async def requests() -> AsyncIterator[objects_pb2.UploadObjectRequest]:
            yield objects_pb2.UploadObjectRequest(
                header=objects_pb2.UploadObjectHeader(
                    tenant_id=self._tenant, key=key, content_type="application/octet-stream"
                )
            )
            for chunk in payload.chunks():
                yield objects_pb2.UploadObjectRequest(chunk=chunk)

        meta = await self._stub.UploadObject(requests(), metadata=self._md)
        if meta.size_bytes != payload.size or meta.sha256 != payload.sha256:
            raise AssertionError(
                f"upload of {key}: service stored {meta.size_bytes} bytes, sha {meta.sha256}"
            )

    async def download(self, key: str, payload: Payload) -> None:
        check = payload.checker()
        call = self._stub.DownloadObject(
            objects_pb2.DownloadObjectRequest(tenant_id=self._tenant, key=key), metadata=self._md
        )
        async for message in call:
            if message.WhichOneof("part") == "chunk":
                check.feed(message.chunk)
        check.finish()

    async def delete(self, key: str) -> None:
        await self._stub.DeleteObject(
            objects_pb2.DeleteObjectRequest(tenant_id=self._tenant, key=key), metadata=self._md
        )


# -- raw disk --------------------------------------------------------------------------------


class RawDisk:
    """The same bytes written to a file on the same disk (then fsync, as the local adapter
    does before its rename) and read back 1 MiB at a time."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self._dir / key.replace("/", "_")

    async def upload(self, key: str, payload: Payload) -> None:
        def write() -> None:
            with open(self._path(key), "wb") as fh:
                for chunk in payload.chunks():
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())

        await asyncio.to_thread(write)

    async def download(self, key: str, payload: Payload) -> None:
        def read() -> None:
            check = payload.checker()
            with open(self._path(key), "rb", buffering=0) as fh:
                while data := fh.read(MiB):
                    check.feed(data)
            check.finish()

        await asyncio.to_thread(read)

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


# -- S3 (aioboto3, the same moto server) ----------------------------------------------------


class DirectS3:
    def __init__(self, endpoint: str, credentials: dict[str, str], bucket: str) -> None:
        self._endpoint = endpoint
        self._credentials = credentials
        self.bucket = bucket
        self._client: Any = None
        self._stack: Any = None

    async def open(self) -> None:
        import contextlib

        import aioboto3
        from botocore.config import Config

        self._stack = contextlib.AsyncExitStack()
        self._client = await self._stack.enter_async_context(
            aioboto3.Session().client(
                "s3",
                endpoint_url=self._endpoint,
                region_name="us-east-1",
                aws_access_key_id=self._credentials["access_key_id"],
                aws_secret_access_key=self._credentials["secret_access_key"],
                config=Config(s3={"addressing_style": "path"}, max_pool_connections=16),
            )
        )
        await self._client.create_bucket(Bucket=self.bucket)

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()

    async def upload(self, key: str, payload: Payload) -> None:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=S3_PART, multipart_chunksize=S3_PART, max_concurrency=UPLOAD_CONCURRENCY
        )
        await self._client.upload_fileobj(AsyncReader(payload), self.bucket, key, Config=config)

    async def download(self, key: str, payload: Payload) -> None:
        check = payload.checker()
        response = await self._client.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]
        try:
            async for chunk in body.iter_chunks(MiB):
                check.feed(chunk)
        finally:
            body.close()
        check.finish()

    async def delete(self, key: str) -> None:
        await self._client.delete_object(Bucket=self.bucket, Key=key)


# -- Azure Blob (azure-storage-blob aio, the same Azurite) -----------------------------------


class DirectBlob:
    def __init__(self, connection_string: str, container: str) -> None:
        self._conn = connection_string
        self.container = container
        self._service: Any = None

    async def open(self) -> None:
        from azure.storage.blob.aio import BlobServiceClient

        self._service = BlobServiceClient.from_connection_string(
            self._conn,
            max_single_put_size=BLOB_BLOCK,
            max_block_size=BLOB_BLOCK,
            max_single_get_size=BLOB_GET_CHUNK,
            max_chunk_get_size=BLOB_GET_CHUNK,
        )
        await self._service.create_container(self.container)

    async def close(self) -> None:
        if self._service is not None:
            await self._service.close()

    async def upload(self, key: str, payload: Payload) -> None:
        blob = self._service.get_blob_client(self.container, key)
        await blob.upload_blob(payload.achunks(), overwrite=True, max_concurrency=UPLOAD_CONCURRENCY)

    async def download(self, key: str, payload: Payload) -> None:
        check = payload.checker()
        blob = self._service.get_blob_client(self.container, key)
        stream = await blob.download_blob(max_concurrency=1)
        async for chunk in stream.chunks():
            check.feed(chunk)
        check.finish()

    async def delete(self, key: str) -> None:
        await self._service.get_blob_client(self.container, key).delete_blob()
