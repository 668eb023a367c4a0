"""Object use cases of StorageService, on the ports (no gRPC, no proto messages here).

What must be the same for every backend lives here: capability answers (FAILED_PRECONDITION
naming the capability), the expected-SHA-256 and declared-length checks and the quota, all
raised inside the upload stream so the adapter aborts and nothing is stored, and the stored
bytes delta of every write and delete (StoredBytes).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TypeVar

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.storage.capabilities import require
from services.storage.ports import ObjectInfo, ObjectStore, SignedUrl, SignMethod, StoreLeases
from services.storage.quota import QuotaGuard, StorageQuota
from services.storage.stored_bytes import StoredBytes

M = TypeVar("M")

KIND = "object store"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_SIGN_TTL = timedelta(minutes=15)
# Hash big chunks off the event loop (hashlib releases the GIL for them).
_HASH_OFFLOAD_BYTES = 64 * 1024


class ObjectManager:
    def __init__(self, leases: StoreLeases, stored: StoredBytes, quota: StorageQuota | None = None) -> None:
        self._leases = leases
        self._stored = stored
        self._quota = quota

    async def put(
        self,
        tenant_id: str,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        user_metadata: dict[str, str],
        if_none_match: bool,
        declared: int | None,
        expected_sha256: str | None = None,
    ) -> ObjectInfo:
        if expected_sha256:
            chunks = _verified(chunks, expected_sha256)
        async with self._leases.objects(tenant_id) as lease:
            store = lease.store
            require(
                not if_none_match or store.capabilities.if_none_match, KIND, lease.backend, "if_none_match"
            )
            # Size before the write, for the storage_bytes delta (a racing writer can make
            # one delta slightly off; metering is eventually corrected by the next write).
            previous = 0 if if_none_match else await _size_or_zero(store, key)
            if self._quota is not None:
                # Refused here, before the first byte is read, when the declared size is over.
                guard = await self._quota.guard(tenant_id, replacing=previous, declared=declared)
                chunks = _guarded(chunks, guard, declared)
            info = await store.put(
                key,
                chunks,
                content_type=content_type or DEFAULT_CONTENT_TYPE,
                user_metadata=user_metadata,
                if_none_match=if_none_match,
            )
            backend = lease.backend
        await self._stored.changed(tenant_id, backend, info.size - previous)
        return info

    async def delete(self, tenant_id: str, key: str) -> None:
        async with self._leases.objects(tenant_id) as lease:
            info = await lease.store.delete(key)
            backend = lease.backend
        await self._stored.changed(tenant_id, backend, -info.size)

    @asynccontextmanager
    async def read(
        self, tenant_id: str, key: str, *, start: int = 0, length: int | None = None
    ) -> AsyncIterator[tuple[ObjectInfo, AsyncIterator[bytes]]]:
        """The object's description and content; the adapter stays leased (and the stream
        open) until the caller leaves the block."""
        async with self._leases.objects(tenant_id) as lease:
            ranged = start > 0 or length is not None
            require(not ranged or lease.store.capabilities.ranged_read, KIND, lease.backend, "ranged_read")
            info, stream = await lease.store.get(key, start=start, length=length)
            try:
                yield info, stream
            finally:
                closer = getattr(stream, "aclose", None)
                if closer is not None:
                    await closer()

    async def head(self, tenant_id: str, key: str) -> ObjectInfo:
        async with self._leases.objects(tenant_id) as lease:
            return await lease.store.head(key)

    async def list(
        self,
        tenant_id: str,
        prefix: str,
        page_size: int,
        page_token: str,
        render: Callable[[ObjectInfo], M],
        fits: Callable[[Sequence[M]], int],
    ) -> tuple[list[M], str]:
        """One page, rendered; `fits` says how many rendered objects fit one response (a page
        is bounded by bytes too), and a page that does not fit is asked again for fewer."""
        if "\x00" in prefix:
            raise InvalidArgument(
                "prefix must not contain NUL", field_violations=[("prefix", "contains NUL")]
            )
        async with self._leases.objects(tenant_id) as lease:
            while True:
                page = await lease.store.list(prefix, page_size, page_token)
                rendered = [render(o) for o in page.objects]
                fitting = fits(rendered)
                if fitting == len(rendered):
                    return rendered, page.next_page_token
                page_size = fitting  # the adapter's token then resumes after the ones that fit

    async def sign_url(
        self, tenant_id: str, key: str, method: SignMethod, ttl: timedelta | None
    ) -> SignedUrl:
        async with self._leases.objects(tenant_id) as lease:
            require(lease.store.capabilities.sign_url, KIND, lease.backend, "sign_url")
            return await lease.store.sign_url(key, method, ttl or DEFAULT_SIGN_TTL)


async def _verified(chunks: AsyncIterator[bytes], expected: str) -> AsyncIterator[bytes]:
    """The chunks, refused at the end (inside the stream, so the adapter aborts and nothing is
    stored) when their SHA-256 is not the expected one."""
    digest = hashlib.sha256()
    async for data in chunks:
        if len(data) >= _HASH_OFFLOAD_BYTES:
            await asyncio.to_thread(digest.update, data)
        else:
            digest.update(data)
        yield data
    if digest.hexdigest() != expected:
        raise FailedPrecondition(
            "uploaded content does not match expected_sha256", reason="CHECKSUM_MISMATCH"
        )


async def _guarded(
    chunks: AsyncIterator[bytes], guard: QuotaGuard, declared: int | None
) -> AsyncIterator[bytes]:
    """The upload's chunks, refused (inside the stream, so the adapter aborts) at the first
    byte over a limit, or at the end when the size differs from the declared one."""
    async for data in chunks:
        guard.add(len(data))
        if declared is not None and guard.size > declared:
            break
        yield data
    if declared is not None and guard.size != declared:
        raise InvalidArgument(
            f"content is not the declared {declared} bytes",
            field_violations=[("header.content_length", "does not match the content sent")],
        )


async def _size_or_zero(store: ObjectStore, key: str) -> int:
    try:
        return (await store.head(key)).size
    except NotFound:
        return 0
