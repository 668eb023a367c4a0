"""S3ObjectStore: the ObjectStore port on AWS S3 and S3-compatible stores (MinIO, R2, moto).

One aioboto3 client per tenant adapter, opened lazily and closed by close(). The SDK's retries
are off; errors.call() applies the mesh's retry policy and error mapping to every request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aioboto3
from botocore.config import Config

from services.common.errors import FailedPrecondition
from services.storage.adapters.object_backend import CloudObjectStore, check_sign_ttl, unless_code
from services.storage.adapters.s3 import lister, reader
from services.storage.adapters.s3.config import S3Config
from services.storage.adapters.s3.errors import ErrorContext, RetryPolicy, call, error_code
from services.storage.adapters.s3.writer import S3Writer
from services.storage.ports import ObjectCapabilities, ObjectInfo, ObjectPage, SignedUrl, SignMethod

_SESSION: aioboto3.Session | None = None


def _shared_session() -> aioboto3.Session:
    """One session for every tenant's client: botocore caches the parsed service model per
    session, so a new tenant adapter costs milliseconds instead of re-reading the S3 model.
    Credentials are per client (the tenant's), never on the session."""
    global _SESSION
    if _SESSION is None:
        _SESSION = aioboto3.Session()
    return _SESSION


class S3ObjectStore(CloudObjectStore):
    def __init__(self, cfg: S3Config, *, retry: RetryPolicy | None = None) -> None:
        self.cfg = cfg
        self._policy = retry or RetryPolicy(max_attempts=cfg.max_attempts)
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def capabilities(self) -> ObjectCapabilities:
        return ObjectCapabilities(sign_url=True, if_none_match=self.cfg.conditional_writes, ranged_read=True)

    async def client(self) -> Any:
        """The tenant's S3 client (created on first use)."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                if self._closed:
                    raise FailedPrecondition(f"{self.cfg.label}: adapter is closed")
                creds = self.cfg.credentials or {}
                config = Config(
                    region_name=self.cfg.region,
                    signature_version="s3v4",
                    s3={"addressing_style": "path" if self.cfg.path_style else "auto"},
                    retries={"mode": "standard", "total_max_attempts": 1},  # errors.call() retries
                    connect_timeout=self.cfg.connect_timeout,
                    read_timeout=self.cfg.read_timeout,
                    max_pool_connections=max(
                        10, self.cfg.upload_concurrency * 2, self.cfg.list_head_concurrency
                    ),
                    request_checksum_calculation=self.cfg.checksums,
                    response_checksum_validation=self.cfg.checksums,
                )
                self._client = await self._stack.enter_async_context(
                    _shared_session().client(
                        "s3",
                        endpoint_url=self.cfg.endpoint_url,
                        region_name=self.cfg.region,
                        aws_access_key_id=creds.get("access_key_id"),
                        aws_secret_access_key=creds.get("secret_access_key"),
                        aws_session_token=creds.get("session_token") or None,
                        config=config,
                    )
                )
        return self._client

    @property
    def label(self) -> str:
        return self.cfg.label

    async def writer(self, create_only: bool) -> S3Writer:
        if create_only and not self.cfg.conditional_writes:
            raise FailedPrecondition(
                f"{self.cfg.label}: capability if_none_match (create-only writes) is off for this "
                "S3-compatible store (binding option conditional_writes=false)",
                reason="CAPABILITY_MISSING",
                metadata={"capability": "if_none_match"},
            )
        return S3Writer(await self.client(), self.cfg, self._policy)

    async def get(
        self, key: str, *, start: int = 0, length: int | None = None
    ) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        return await reader.read_object(await self.client(), self.cfg, self._policy, key, start, length)

    async def head(self, key: str) -> ObjectInfo:
        return await reader.head_object(await self.client(), self.cfg, self._policy, key)

    async def delete_if_match(self, key: str, etag: str) -> None:
        client = await self.client()
        await call(
            lambda: client.delete_object(Bucket=self.cfg.bucket, Key=key, IfMatch=f'"{etag}"'),
            ErrorContext(self.cfg.label, key),
            self._policy,
        )

    async def list(self, prefix: str, page_size: int, page_token: str) -> ObjectPage:
        return await lister.list_objects(
            await self.client(), self.cfg, self._policy, prefix, page_size, page_token
        )

    async def sign_url(self, key: str, method: SignMethod, ttl: timedelta) -> SignedUrl:
        check_sign_ttl(ttl)
        operation = {"GET": "get_object", "PUT": "put_object"}[method]
        seconds = max(1, int(ttl.total_seconds()))
        client = await self.client()
        # Presigning is local (no request): only a missing credential can fail here.
        try:
            url = await client.generate_presigned_url(
                operation, Params={"Bucket": self.cfg.bucket, "Key": key}, ExpiresIn=seconds
            )
        except Exception as exc:
            raise FailedPrecondition(
                f"{self.cfg.label}: capability sign_url needs credentials; none were found",
                reason="BACKEND_CREDENTIALS_MISSING",
            ) from exc
        return SignedUrl(url=str(url), expires=datetime.now(UTC) + timedelta(seconds=seconds))

    async def provision(self) -> None:
        """Create the bucket; an existing bucket of ours is fine (idempotent)."""
        client = await self.client()
        params: dict[str, Any] = {"Bucket": self.cfg.bucket}
        if self.cfg.region not in ("us-east-1", "auto"):
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.cfg.region}
        ctx = ErrorContext(self.cfg.label)
        await unless_code(
            lambda: call(lambda: client.create_bucket(**params), ctx, self._policy),
            error_code,
            "BucketAlreadyOwnedByYou",
        )

    async def deprovision(self) -> None:
        """Abort pending uploads, delete every object version, then the bucket; a missing bucket
        is fine (idempotent)."""
        client = await self.client()
        ctx = ErrorContext(self.cfg.label)

        async def remove() -> None:
            await self._abort_uploads(client, ctx)
            await self._delete_all_versions(client, ctx)
            await call(lambda: client.delete_bucket(Bucket=self.cfg.bucket), ctx, self._policy)

        await unless_code(remove, error_code, "NoSuchBucket")

    async def _abort_uploads(self, client: Any, ctx: ErrorContext) -> None:
        params: dict[str, Any] = {"Bucket": self.cfg.bucket}
        while True:
            page = await call(lambda: client.list_multipart_uploads(**params), ctx, self._policy)
            for upload in page.get("Uploads", []):
                key, upload_id = upload["Key"], upload["UploadId"]
                await call(
                    lambda k=key, u=upload_id: client.abort_multipart_upload(  # type: ignore[misc]
                        Bucket=self.cfg.bucket, Key=k, UploadId=u
                    ),
                    ctx,
                    self._policy,
                )
            if not page.get("IsTruncated"):
                return
            params["KeyMarker"] = page.get("NextKeyMarker", "")
            params["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    async def _delete_all_versions(self, client: Any, ctx: ErrorContext) -> None:
        # ListObjectVersions also returns the objects of an unversioned bucket (VersionId "null").
        params: dict[str, Any] = {"Bucket": self.cfg.bucket, "MaxKeys": 1000}
        while True:
            page = await call(lambda: client.list_object_versions(**params), ctx, self._policy)
            targets = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if targets:
                resp = await call(
                    lambda t=targets: client.delete_objects(  # type: ignore[misc]
                        Bucket=self.cfg.bucket, Delete={"Objects": t, "Quiet": True}
                    ),
                    ctx,
                    self._policy,
                )
                if resp.get("Errors"):
                    raise FailedPrecondition(
                        f"{self.cfg.label}: could not delete every object before removing the bucket",
                        reason="DEPROVISION_INCOMPLETE",
                    )
            if not page.get("IsTruncated"):
                return
            params["KeyMarker"] = page.get("NextKeyMarker", "")
            params["VersionIdMarker"] = page.get("NextVersionIdMarker", "")

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            self._client = None
            await self._stack.aclose()
