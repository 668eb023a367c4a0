"""Streaming writes: one Put Blob for small objects, staged blocks + Put Block List for large ones.

The streaming loop, block sizing, bounded parallel staging, the SHA-256 and abort-on-failure
are object_writer's; this module supplies Azure's primitives. Unlike S3, Azure takes metadata
at commit time, so the hash rides on the Put Block List itself (with If-None-Match: * for create-only writes).
On any failure or cancellation the in-flight blocks are cancelled and the block list is never
committed: uncommitted blocks are invisible (not listed, not readable), the previous version
stays intact, and Azure discards them (at the blob's next commit, or after 7 days).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from azure.core import MatchConditions
from azure.storage.blob import BlobBlock, BlobType, ContentSettings

from services.storage.adapters import object_writer
from services.storage.adapters.azure_blob.config import MAX_BLOCKS, BlobConfig
from services.storage.adapters.azure_blob.errors import ErrorContext, RetryPolicy, call
from services.storage.adapters.azure_blob.metadata import DEFAULT_CONTENT_TYPE, clean_etag, to_blob_metadata
from services.storage.adapters.object_writer import WriteResult


class _Target:
    """One blob being written: the primitives object_writer.write_object drives."""

    part_noun = "blocks"

    def __init__(
        self,
        blob: Any,
        cfg: BlobConfig,
        policy: RetryPolicy,
        ctx: ErrorContext,
        content_type: str,
        user_metadata: Mapping[str, str],
        if_none_match: bool,
    ) -> None:
        self._blob, self._cfg, self._policy, self._ctx = blob, cfg, policy, ctx
        self._content_type, self._user_metadata = content_type, user_metadata
        self._if_none_match = if_none_match
        self.part_size, self.concurrency, self.max_parts = cfg.part_size, cfg.upload_concurrency, MAX_BLOCKS

    async def put_single(self, data: bytes, sha256: str) -> str:
        resp = await call(
            lambda: self._blob.upload_blob(
                data,
                length=len(data),
                blob_type=BlobType.BLOCKBLOB,
                overwrite=not self._if_none_match,  # False sends If-None-Match: *
                content_settings=ContentSettings(content_type=self._content_type),
                metadata=to_blob_metadata(self._user_metadata, sha256),
                max_concurrency=1,
            ),
            self._ctx,
            self._policy,
        )
        return clean_etag(resp.get("etag"))

    async def start(self) -> _StagedBlocks:
        return _StagedBlocks(self)


class _StagedBlocks:
    """Blocks of one upload, under ids unique to this upload (two uploads to the same key never
    mix blocks; all ids have one length, as Azure requires per blob). Nothing to start: the
    block list is committed at the end, with the metadata and the hash."""

    def __init__(self, target: _Target) -> None:
        self._t = target
        self._upload = uuid.uuid4().hex

    async def write_part(self, number: int, data: bytes) -> str:
        block_id = base64.b64encode(f"{self._upload}-{number - 1:06d}".encode()).decode("ascii")
        await call(
            lambda: self._t._blob.stage_block(block_id, data, length=len(data)), self._t._ctx, self._t._policy
        )
        return block_id

    async def complete(self, parts: Sequence[str], sha256: str, size: int) -> str:
        t = self._t
        conditions: dict[str, Any] = (
            {"match_condition": MatchConditions.IfMissing} if t._if_none_match else {}
        )
        resp = await call(
            lambda: t._blob.commit_block_list(
                [BlobBlock(block_id=i) for i in parts],
                content_settings=ContentSettings(content_type=t._content_type),
                metadata=to_blob_metadata(t._user_metadata, sha256),
                **conditions,
            ),
            t._ctx,
            t._policy,
        )
        return clean_etag(resp.get("etag"))

    async def abort(self) -> None:
        """Uncommitted blocks are invisible and Azure discards them: nothing to call."""


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
    to_blob_metadata(user_metadata, "0" * 64)  # refuse oversized metadata before any byte moves
    target = _Target(
        blob, cfg, policy, ctx, content_type or DEFAULT_CONTENT_TYPE, user_metadata, if_none_match
    )
    return await object_writer.write_object(target, chunks)
