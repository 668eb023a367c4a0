"""Streaming writes: one PutObject for small objects, multipart upload for large ones.

Memory stays bounded: one part being filled plus `upload_concurrency` parts in flight (each
held twice while sending: our copy and the HTTP stack's), whatever the object's size.
The streaming loop, part sizing, the SHA-256 and abort-on-failure are object_writer's; this
module supplies S3's primitives. A small object carries it (and ChecksumSHA256, which
S3 verifies) in its PutObject. A multipart object's metadata is fixed when the upload starts,
before the hash is known, so after CompleteMultipartUpload the object is copied onto itself
with the hash added (CopySourceIfMatch: only our own version gets stamped; a concurrent
overwrite wins). Any failure or cancellation aborts the multipart upload after cancelling the
in-flight parts, so no parts and no partial object remain; the previous version stays intact.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from services.storage.adapters import object_writer
from services.storage.adapters.object_writer import WriteResult, shielded
from services.storage.adapters.s3.config import MAX_PARTS, S3Config
from services.storage.adapters.s3.errors import ErrorContext, RetryPolicy, call, error_code
from services.storage.adapters.s3.metadata import DEFAULT_CONTENT_TYPE, clean_etag, to_s3_metadata

MAX_COPY_SIZE = 5 * 1024**3  # CopyObject's limit; larger objects are copied part by part
COPY_PART_SIZE = 1024**3


class _Target:
    """One object being written to S3: the primitives object_writer.write_object drives."""

    part_noun = "parts"

    def __init__(
        self,
        client: Any,
        cfg: S3Config,
        policy: RetryPolicy,
        ctx: ErrorContext,
        content_type: str,
        user_metadata: Mapping[str, str],
        if_none_match: bool,
    ) -> None:
        self._client, self._cfg, self._policy, self._ctx = client, cfg, policy, ctx
        self._content_type, self._user_metadata, self._if_none_match = (
            content_type,
            user_metadata,
            if_none_match,
        )
        self.part_size, self.concurrency, self.max_parts = cfg.part_size, cfg.upload_concurrency, MAX_PARTS

    async def put_single(self, data: bytes, sha256: str) -> str:
        return await _put_single(
            self._client,
            self._cfg,
            self._policy,
            self._ctx,
            data,
            self._content_type,
            self._user_metadata,
            sha256,
            self._if_none_match,
        )

    async def start(self) -> _Multipart:
        resp = await call(
            lambda: self._client.create_multipart_upload(
                Bucket=self._cfg.bucket,
                Key=self._ctx.key,
                ContentType=self._content_type,
                Metadata=to_s3_metadata(self._user_metadata, None),
            ),
            self._ctx,
            self._policy,
        )
        return _Multipart(self, resp["UploadId"])


class _Multipart:
    """One multipart upload. Its metadata was fixed at the start, before the hash was known, so
    after completing, the object is copied onto itself with the hash added."""

    def __init__(self, target: _Target, upload_id: str) -> None:
        self._t = target
        self.upload_id = upload_id
        self._completed = False

    async def write_part(self, number: int, data: bytes) -> dict[str, Any]:
        t = self._t
        resp = await call(
            lambda: t._client.upload_part(
                Bucket=t._cfg.bucket, Key=t._ctx.key, UploadId=self.upload_id, PartNumber=number, Body=data
            ),
            t._ctx,
            t._policy,
        )
        return {"PartNumber": number, "ETag": resp["ETag"]}

    async def complete(self, parts: Sequence[dict[str, Any]], sha256: str, size: int) -> str:
        t = self._t
        extra = {"IfNoneMatch": "*"} if t._if_none_match else {}
        resp = await call(
            lambda: t._client.complete_multipart_upload(
                Bucket=t._cfg.bucket,
                Key=t._ctx.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": list(parts)},
                **extra,
            ),
            t._ctx,
            t._policy,
        )
        self._completed = True  # nothing to abort any more
        etag = clean_etag(resp.get("ETag"))
        return await _stamp_sha256(
            t._client, t._cfg, t._policy, t._ctx, etag, size, t._content_type, t._user_metadata, sha256
        )

    async def abort(self) -> None:
        if self._completed:
            return
        t = self._t
        with contextlib.suppress(Exception):  # the original failure is what the caller must see
            await call(
                lambda: t._client.abort_multipart_upload(
                    Bucket=t._cfg.bucket, Key=t._ctx.key, UploadId=self.upload_id
                ),
                t._ctx,
                t._policy,
            )


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
    to_s3_metadata(user_metadata, "0" * 64)  # refuse oversized metadata before any byte moves
    target = _Target(
        client, cfg, policy, ctx, content_type or DEFAULT_CONTENT_TYPE, user_metadata, if_none_match
    )
    return await object_writer.write_object(target, chunks)


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
        await shielded(
            call(
                lambda: client.abort_multipart_upload(Bucket=cfg.bucket, Key=ctx.key, UploadId=upload_id),
                ctx,
                policy,
            )
        )
        raise
