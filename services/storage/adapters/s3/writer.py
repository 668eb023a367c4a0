"""Streaming writes: one PutObject for small objects, multipart upload for large ones.

Memory stays bounded: one part being filled plus `upload_concurrency` parts in flight (each
held twice while sending: our copy and the HTTP stack's), whatever the object's size.
The streaming loop, part sizing, the SHA-256, abort-on-failure and where create-only applies
are object_writer's; this module supplies S3's primitives (S3Writer). A small object carries
the SHA-256 (and ChecksumSHA256, which S3 verifies) in its PutObject. A multipart object's
metadata is fixed when the upload starts, before the hash is known, so after
CompleteMultipartUpload the object is copied onto itself with the hash added
(CopySourceIfMatch: only our own version gets stamped; a concurrent overwrite wins). Any
failure or cancellation aborts the multipart upload after cancelling the in-flight parts, so
no parts and no partial object remain; the previous version stays intact.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Awaitable, Sequence
from typing import Any

from services.storage.adapters.object_metadata import clean_etag
from services.storage.adapters.object_writer import ObjectWrite, shielded
from services.storage.adapters.s3.config import MAX_PARTS, S3Config
from services.storage.adapters.s3.errors import ErrorContext, RetryPolicy, call, error_code
from services.storage.adapters.s3.metadata import to_s3_metadata

MAX_COPY_SIZE = 5 * 1024**3  # CopyObject's limit; larger objects are copied part by part
COPY_PART_SIZE = 1024**3


class S3Writer:
    """S3's write primitives, driven by object_writer.write_object."""

    part_noun = "parts"

    def __init__(self, client: Any, cfg: S3Config, policy: RetryPolicy) -> None:
        self._client, self._cfg, self._policy = client, cfg, policy
        self.part_size, self.concurrency, self.max_parts = cfg.part_size, cfg.upload_concurrency, MAX_PARTS

    def check_metadata(self, write: ObjectWrite) -> None:
        to_s3_metadata(write.user_metadata, "0" * 64)

    async def put_single(self, write: ObjectWrite, data: bytes, sha256: str) -> str:
        extra: dict[str, str] = {"IfNoneMatch": "*"} if write.create_only else {}
        resp = await call(
            lambda: self._client.put_object(
                Bucket=self._cfg.bucket,
                Key=write.key,
                Body=data,
                ContentType=write.content_type,
                Metadata=to_s3_metadata(write.user_metadata, sha256),
                ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode("ascii"),
                **extra,
            ),
            write.ctx,
            self._policy,
        )
        return clean_etag(resp.get("ETag"))

    async def start(self, write: ObjectWrite) -> _Multipart:
        resp = await call(
            lambda: self._client.create_multipart_upload(
                Bucket=self._cfg.bucket,
                Key=write.key,
                ContentType=write.content_type,
                Metadata=to_s3_metadata(write.user_metadata, None),
            ),
            write.ctx,
            self._policy,
        )
        return _Multipart(self._client, self._cfg, self._policy, write, resp["UploadId"])


class _Multipart:
    """One multipart upload. Its metadata was fixed at the start, before the hash was known, so
    after completing, the object is copied onto itself with the hash added."""

    def __init__(
        self, client: Any, cfg: S3Config, policy: RetryPolicy, write: ObjectWrite, upload_id: str
    ) -> None:
        self._client, self._cfg, self._policy, self._write = client, cfg, policy, write
        self.upload_id = upload_id
        self._completed = False

    def _call(self, method: str, **params: Any) -> Awaitable[Any]:
        op = getattr(self._client, method)
        return call(
            lambda: op(Bucket=self._cfg.bucket, Key=self._write.key, UploadId=self.upload_id, **params),
            self._write.ctx,
            self._policy,
        )

    async def write_part(self, number: int, data: bytes) -> dict[str, Any]:
        resp = await self._call("upload_part", PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": resp["ETag"]}

    async def complete(self, parts: Sequence[dict[str, Any]], sha256: str, size: int) -> str:
        extra = {"IfNoneMatch": "*"} if self._write.create_only else {}
        resp = await self._call("complete_multipart_upload", MultipartUpload={"Parts": list(parts)}, **extra)
        self._completed = True  # nothing to abort any more
        return await self._stamp_sha256(clean_etag(resp.get("ETag")), size, sha256)

    async def abort(self) -> None:
        if self._completed:
            return
        with contextlib.suppress(Exception):  # the original failure is what the caller must see
            await self._call("abort_multipart_upload")

    async def _stamp_sha256(self, etag: str, size: int, digest: str) -> str:
        """Copy the completed object onto itself with the hash in its metadata."""
        client, cfg, policy, ctx = self._client, self._cfg, self._policy, self._write.ctx
        content_type = self._write.content_type
        stamp_ctx = ErrorContext(ctx.label, ctx.key)
        source = {"Bucket": cfg.bucket, "Key": ctx.key}
        metadata = to_s3_metadata(self._write.user_metadata, digest)
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
            return await self._copy_in_parts(stamp_ctx, etag, size, metadata)
        except Exception as exc:
            if error_code(exc.__cause__ or exc) in ("PreconditionFailed", "NoSuchKey", "404"):
                return etag  # overwritten or deleted meanwhile: the later write wins, ours is gone
            raise

    async def _copy_in_parts(self, ctx: ErrorContext, etag: str, size: int, metadata: dict[str, str]) -> str:
        client, cfg, policy, content_type = self._client, self._cfg, self._policy, self._write.content_type
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
