"""Streaming writes: one Put Blob for small objects, staged blocks + Put Block List for large ones.

The streaming loop, block sizing, bounded parallel staging, the SHA-256, abort-on-failure and
where create-only applies are object_writer's; this module supplies Azure's primitives
(BlobWriter). Unlike S3, Azure takes metadata
at commit time, so the hash rides on the Put Block List itself (with If-None-Match: * for create-only writes).
On any failure or cancellation the in-flight blocks are cancelled and the block list is never
committed: uncommitted blocks are invisible (not listed, not readable), the previous version
stays intact, and Azure discards them (at the blob's next commit, or after 7 days).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any

from azure.core import MatchConditions
from azure.storage.blob import BlobBlock, BlobType, ContentSettings

from services.storage.adapters.azure_blob.config import MAX_BLOCKS, BlobConfig
from services.storage.adapters.azure_blob.errors import RetryPolicy, call
from services.storage.adapters.azure_blob.metadata import to_blob_metadata
from services.storage.adapters.azure_blob.names import to_blob_name
from services.storage.adapters.object_metadata import clean_etag
from services.storage.adapters.object_writer import ObjectWrite


class BlobWriter:
    """One container's write primitives, driven by object_writer.write_object."""

    part_noun = "blocks"

    def __init__(self, container: Any, cfg: BlobConfig, policy: RetryPolicy) -> None:
        self._container, self._policy = container, policy
        self.part_size, self.concurrency, self.max_parts = cfg.part_size, cfg.upload_concurrency, MAX_BLOCKS

    def check_metadata(self, write: ObjectWrite) -> None:
        to_blob_metadata(write.user_metadata, "0" * 64)

    async def put_single(self, write: ObjectWrite, data: bytes, sha256: str) -> str:
        blob = self._container.get_blob_client(to_blob_name(write.key))
        resp = await call(
            lambda: blob.upload_blob(
                data,
                length=len(data),
                blob_type=BlobType.BLOCKBLOB,
                overwrite=not write.create_only,  # False sends If-None-Match: *
                content_settings=ContentSettings(content_type=write.content_type),
                metadata=to_blob_metadata(write.user_metadata, sha256),
                max_concurrency=1,
            ),
            write.ctx,
            self._policy,
        )
        return clean_etag(resp.get("etag"))

    async def start(self, write: ObjectWrite) -> _StagedBlocks:
        blob = self._container.get_blob_client(to_blob_name(write.key))
        return _StagedBlocks(blob, write, self._policy)


class _StagedBlocks:
    """Blocks of one upload, under ids unique to this upload (two uploads to the same key never
    mix blocks; all ids have one length, as Azure requires per blob). Nothing to start: the
    block list is committed at the end, with the metadata and the hash."""

    def __init__(self, blob: Any, write: ObjectWrite, policy: RetryPolicy) -> None:
        self._blob, self._write, self._policy = blob, write, policy
        self._upload = uuid.uuid4().hex

    async def write_part(self, number: int, data: bytes) -> str:
        block_id = base64.b64encode(f"{self._upload}-{number - 1:06d}".encode()).decode("ascii")
        await call(
            lambda: self._blob.stage_block(block_id, data, length=len(data)), self._write.ctx, self._policy
        )
        return block_id

    async def complete(self, parts: Sequence[str], sha256: str, size: int) -> str:
        w = self._write
        conditions: dict[str, Any] = {"match_condition": MatchConditions.IfMissing} if w.create_only else {}
        resp = await call(
            lambda: self._blob.commit_block_list(
                [BlobBlock(block_id=i) for i in parts],
                content_settings=ContentSettings(content_type=w.content_type),
                metadata=to_blob_metadata(w.user_metadata, sha256),
                **conditions,
            ),
            w.ctx,
            self._policy,
        )
        return clean_etag(resp.get("etag"))

    async def abort(self) -> None:
        """Uncommitted blocks are invisible and Azure discards them: nothing to call."""
