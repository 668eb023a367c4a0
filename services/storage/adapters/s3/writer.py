"""Streaming writes: one PutObject for small objects, multipart upload for large ones.

Memory stays bounded: one part being filled plus `upload_concurrency` parts in flight (each
held twice while sending: our copy and the HTTP stack's), whatever the object's size.
The SHA-256 is computed while streaming. A small object carries it (and ChecksumSHA256, which
S3 verifies) in its PutObject. A multipart object's metadata is fixed when the upload starts,
before the hash is known, so after CompleteMultipartUpload the object is copied onto itself
with the hash added (CopySourceIfMatch: only our own version gets stamped; a concurrent
overwrite wins). Any failure or cancellation aborts the multipart upload after cancelling the
in-flight parts, so no parts and no partial object remain; the previous version stays intact.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.errors import InvalidArgument
from services.storage.adapters.s3.config import MAX_PARTS, S3Config
from services.storage.adapters.s3.errors import ErrorContext, RetryPolicy, call, error_code
from services.storage.adapters.s3.metadata import DEFAULT_CONTENT_TYPE, clean_etag, to_s3_metadata

MAX_COPY_SIZE = 5 * 1024**3  # CopyObject's limit; larger objects are copied part by part
COPY_PART_SIZE = 1024**3


@dataclass(frozen=True)
class WriteResult:
    etag: str
    size: int
    sha256: str


class _Multipart:
    """One multipart upload with bounded parallel part uploads."""

    def __init__(self, client: Any, cfg: S3Config, policy: RetryPolicy, ctx: ErrorContext, upload_id: str):
        self._client, self._cfg, self._policy, self._ctx = client, cfg, policy, ctx
        self.upload_id = upload_id
        self._slots = asyncio.Semaphore(cfg.upload_concurrency)
        self._tasks: list[asyncio.Task[dict[str, Any]]] = []

    async def add_part(self, buf: bytearray, size: int) -> None:
        """Upload the first `size` bytes of buf as the next part (removed from buf). Waits for a
        free slot before copying them out, so at most `upload_concurrency` parts exist."""
        number = len(self._tasks) + 1
        if number > MAX_PARTS:
            raise InvalidArgument(
                f"object too large: more than {MAX_PARTS} parts of {self._cfg.part_size} bytes; "
                "raise the binding's part_size_bytes"
            )
        await self._slots.acquire()
        for task in self._tasks:  # surface a failed part now, not at the end of the stream
            if task.done() and task.exception() is not None:
                self._slots.release()
                await task
        with memoryview(buf) as view:
            data = bytes(view[:size])
        del buf[:size]
        self._tasks.append(asyncio.create_task(self._upload(number, data)))

    async def _upload(self, number: int, data: bytes) -> dict[str, Any]:
        try:
            resp = await call(
                lambda: self._client.upload_part(
                    Bucket=self._cfg.bucket,
                    Key=self._ctx.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=data,
                ),
                self._ctx,
                self._policy,
            )
            return {"PartNumber": number, "ETag": resp["ETag"]}
        finally:
            self._slots.release()

    async def complete(self, if_none_match: bool) -> str:
        parts = list(await asyncio.gather(*self._tasks))
        extra = {"IfNoneMatch": "*"} if if_none_match else {}
        resp = await call(
            lambda: self._client.complete_multipart_upload(
                Bucket=self._cfg.bucket,
                Key=self._ctx.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
                **extra,
            ),
            self._ctx,
            self._policy,
        )
        return clean_etag(resp.get("ETag"))

    async def abort(self) -> None:
        for task in self._tasks:
            task.cancel()
        # Wait for in-flight parts: a part landing after the abort would be an orphan.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):  # the original failure is what the caller must see
            await call(
                lambda: self._client.abort_multipart_upload(
                    Bucket=self._cfg.bucket, Key=self._ctx.key, UploadId=self.upload_id
                ),
                self._ctx,
                self._policy,
            )


async def _shielded(coro: Any) -> None:
    """Run cleanup to the end even if the caller is cancelled again meanwhile; a cleanup failure
    never hides the failure that caused it."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
    except Exception:  # noqa: S110 - the original error is re-raised by the caller
        pass


async def write_object(
    client: Any,
    cfg: S3Config,
    policy: RetryPolicy,
    key: str,
    chunks: AsyncIterator[bytes],
    *,
    content_type: str,
    user_metadata: Mapping[str, str],
    if_none_match: bool,
) -> WriteResult:
    ctx = ErrorContext(cfg.label, key, create_only=if_none_match)
    content_type = content_type or DEFAULT_CONTENT_TYPE
    to_s3_metadata(user_metadata, "0" * 64)  # refuse oversized metadata before any byte moves
    hasher = hashlib.sha256()
    size = 0
    buf = bytearray()
    upload: _Multipart | None = None
    try:
        async for chunk in chunks:
            hasher.update(chunk)
            size += len(chunk)
            buf += chunk
            # Strictly greater: an object of exactly one part size stays a single PutObject.
            while len(buf) > cfg.part_size:
                if upload is None:
                    upload = await _start(client, cfg, policy, ctx, content_type, user_metadata)
                await upload.add_part(buf, cfg.part_size)
        digest = hasher.hexdigest()
        if upload is None:
            etag = await _put_single(
                client, cfg, policy, ctx, bytes(buf), content_type, user_metadata, digest, if_none_match
            )
            return WriteResult(etag, size, digest)
        if buf:
            await upload.add_part(buf, len(buf))
        etag = await upload.complete(if_none_match)
        upload = None  # completed: nothing to abort any more
        etag = await _stamp_sha256(client, cfg, policy, ctx, etag, size, content_type, user_metadata, digest)
        return WriteResult(etag, size, digest)
    except BaseException:
        if upload is not None:
            await _shielded(upload.abort())
        raise


async def _start(
    client: Any,
    cfg: S3Config,
    policy: RetryPolicy,
    ctx: ErrorContext,
    content_type: str,
    user_metadata: Mapping[str, str],
) -> _Multipart:
    resp = await call(
        lambda: client.create_multipart_upload(
            Bucket=cfg.bucket,
            Key=ctx.key,
            ContentType=content_type,
            Metadata=to_s3_metadata(user_metadata, None),
        ),
        ctx,
        policy,
    )
    return _Multipart(client, cfg, policy, ctx, resp["UploadId"])


async def _put_single(
    client: Any,
    cfg: S3Config,
    policy: RetryPolicy,
    ctx: ErrorContext,
    data: bytes,
    content_type: str,
    user_metadata: Mapping[str, str],
    digest: str,
    if_none_match: bool,
) -> str:
    extra: dict[str, str] = {"IfNoneMatch": "*"} if if_none_match else {}
    resp = await call(
        lambda: client.put_object(
            Bucket=cfg.bucket,
            Key=ctx.key,
            Body=data,
            ContentType=content_type,
            Metadata=to_s3_metadata(user_metadata, digest),
            ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode("ascii"),
            **extra,
        ),
        ctx,
        policy,
    )
    return clean_etag(resp.get("ETag"))


async def _stamp_sha256(
    client: Any,
    cfg: S3Config,
    policy: RetryPolicy,
    ctx: ErrorContext,
    etag: str,
    size: int,
    content_type: str,
    user_metadata: Mapping[str, str],
    digest: str,
) -> str:
    """Copy the completed object onto itself with the hash in its metadata."""
    stamp_ctx = ErrorContext(ctx.label, ctx.key)
    source = {"Bucket": cfg.bucket, "Key": ctx.key}
    metadata = to_s3_metadata(user_metadata, digest)
    try:
        if size <= MAX_COPY_SIZE:
            resp = await call(
                lambda: client.copy_object(
                    Bucket=cfg.bucket,
                    Key=ctx.key,
                    CopySource=source,
                    CopySourceIfMatch=f'"{etag}"',
                    MetadataDirective="REPLACE",
                    Metadata=metadata,
                    ContentType=content_type,
                ),
                stamp_ctx,
                policy,
            )
            return clean_etag(resp["CopyObjectResult"]["ETag"])
        return await _copy_in_parts(client, cfg, policy, stamp_ctx, etag, size, content_type, metadata)
    except Exception as exc:
        if error_code(exc.__cause__ or exc) in ("PreconditionFailed", "NoSuchKey", "404"):
            return etag  # overwritten or deleted meanwhile: the later write wins, ours is gone
        raise


async def _copy_in_parts(
    client: Any,
    cfg: S3Config,
    policy: RetryPolicy,
    ctx: ErrorContext,
    etag: str,
    size: int,
    content_type: str,
    metadata: dict[str, str],
) -> str:
    created = await call(
        lambda: client.create_multipart_upload(
            Bucket=cfg.bucket, Key=ctx.key, ContentType=content_type, Metadata=metadata
        ),
        ctx,
        policy,
    )
    upload_id = created["UploadId"]
    source = {"Bucket": cfg.bucket, "Key": ctx.key}
    try:
        parts = []
        for number, start in enumerate(range(0, size, COPY_PART_SIZE), start=1):
            end = min(size, start + COPY_PART_SIZE) - 1
            resp = await call(
                lambda n=number, a=start, b=end: client.upload_part_copy(  # type: ignore[misc]
                    Bucket=cfg.bucket,
                    Key=ctx.key,
                    UploadId=upload_id,
                    PartNumber=n,
                    CopySource=source,
                    CopySourceRange=f"bytes={a}-{b}",
                    CopySourceIfMatch=f'"{etag}"',
                ),
                ctx,
                policy,
            )
            parts.append({"PartNumber": number, "ETag": resp["CopyPartResult"]["ETag"]})
        done = await call(
            lambda: client.complete_multipart_upload(
                Bucket=cfg.bucket, Key=ctx.key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            ),
            ctx,
            policy,
        )
        return clean_etag(done.get("ETag"))
    except BaseException:
        await _shielded(
            call(
                lambda: client.abort_multipart_upload(Bucket=cfg.bucket, Key=ctx.key, UploadId=upload_id),
                ctx,
                policy,
            )
        )
        raise
