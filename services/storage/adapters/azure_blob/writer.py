"""Streaming writes: one Put Blob for small objects, staged blocks + Put Block List for large ones.

Memory stays bounded: one block being filled plus `upload_concurrency` blocks in flight (each
held twice while sending: our copy and the HTTP stack's), whatever the object's size.
The SHA-256 is computed while streaming and, unlike S3, Azure takes metadata at commit time, so
the hash rides on the Put Block List itself (with If-None-Match: * for create-only writes).
On any failure or cancellation the in-flight blocks are cancelled and the block list is never
committed: uncommitted blocks are invisible (not listed, not readable), the previous version
stays intact, and Azure discards them (at the blob's next commit, or after 7 days).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.storage.blob import BlobBlock, BlobType, ContentSettings

from services.common.errors import InvalidArgument
from services.storage.adapters.azure_blob.config import MAX_BLOCKS, BlobConfig
from services.storage.adapters.azure_blob.errors import ErrorContext, RetryPolicy, call
from services.storage.adapters.azure_blob.metadata import DEFAULT_CONTENT_TYPE, clean_etag, to_blob_metadata


@dataclass(frozen=True)
class WriteResult:
    etag: str
    size: int
    sha256: str


class _StagedBlocks:
    """Blocks of one upload, staged in parallel under ids unique to this upload (two uploads to
    the same key never mix blocks; all ids have one length, as Azure requires per blob)."""

    def __init__(self, blob: Any, cfg: BlobConfig, policy: RetryPolicy, ctx: ErrorContext) -> None:
        self._blob, self._cfg, self._policy, self._ctx = blob, cfg, policy, ctx
        self._upload = uuid.uuid4().hex
        self._slots = asyncio.Semaphore(cfg.upload_concurrency)
        self._tasks: list[asyncio.Task[str]] = []

    async def add(self, buf: bytearray, size: int) -> None:
        """Stage the first `size` bytes of buf as the next block (removed from buf). Waits for a
        free slot before copying them out, so at most `upload_concurrency` blocks exist."""
        number = len(self._tasks)
        if number >= MAX_BLOCKS:
            raise InvalidArgument(
                f"object too large: more than {MAX_BLOCKS} blocks of {self._cfg.part_size} bytes; "
                "raise the binding's part_size_bytes"
            )
        await self._slots.acquire()
        for task in self._tasks:  # surface a failed block now, not at the end of the stream
            if task.done() and task.exception() is not None:
                self._slots.release()
                await task
        with memoryview(buf) as view:
            data = bytes(view[:size])
        del buf[:size]
        block_id = base64.b64encode(f"{self._upload}-{number:06d}".encode()).decode("ascii")
        self._tasks.append(asyncio.create_task(self._stage(block_id, data)))

    async def _stage(self, block_id: str, data: bytes) -> str:
        try:
            await call(
                lambda: self._blob.stage_block(block_id, data, length=len(data)), self._ctx, self._policy
            )
            return block_id
        finally:
            self._slots.release()

    async def commit(self, content_type: str, metadata: dict[str, str], if_none_match: bool) -> str:
        ids = list(await asyncio.gather(*self._tasks))
        conditions: dict[str, Any] = {"match_condition": MatchConditions.IfMissing} if if_none_match else {}
        resp = await call(
            lambda: self._blob.commit_block_list(
                [BlobBlock(block_id=i) for i in ids],
                content_settings=ContentSettings(content_type=content_type),
                metadata=metadata,
                **conditions,
            ),
            self._ctx,
            self._policy,
        )
        return clean_etag(resp.get("etag"))

    async def discard(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _shielded(coro: Any) -> None:
    """Run cleanup to the end even if the caller is cancelled again meanwhile."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
    except Exception:  # noqa: S110 - the original error is re-raised by the caller
        pass


async def write_blob(
    blob: Any,
    cfg: BlobConfig,
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
    to_blob_metadata(user_metadata, "0" * 64)  # refuse oversized metadata before any byte moves
    hasher = hashlib.sha256()
    size = 0
    buf = bytearray()
    blocks: _StagedBlocks | None = None
    try:
        async for chunk in chunks:
            hasher.update(chunk)
            size += len(chunk)
            buf += chunk
            # Strictly greater: an object of exactly one block stays a single Put Blob.
            while len(buf) > cfg.part_size:
                if blocks is None:
                    blocks = _StagedBlocks(blob, cfg, policy, ctx)
                await blocks.add(buf, cfg.part_size)
        digest = hasher.hexdigest()
        metadata = to_blob_metadata(user_metadata, digest)
        if blocks is None:
            data = bytes(buf)
            resp = await call(
                lambda: blob.upload_blob(
                    data,
                    length=len(data),
                    blob_type=BlobType.BLOCKBLOB,
                    overwrite=not if_none_match,  # False sends If-None-Match: *
                    content_settings=ContentSettings(content_type=content_type),
                    metadata=metadata,
                    max_concurrency=1,
                ),
                ctx,
                policy,
            )
            return WriteResult(clean_etag(resp.get("etag")), size, digest)
        if buf:
            await blocks.add(buf, len(buf))
        etag = await blocks.commit(content_type, metadata, if_none_match)
        return WriteResult(etag, size, digest)
    except BaseException:
        if blocks is not None:
            await _shielded(blocks.discard())
        raise
