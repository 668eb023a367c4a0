"""Streamed and ranged reads with the SDK's downloader, in ranged GETs of `download_chunk` bytes
(the client's max_single_get_size / max_chunk_get_size), re-cut to at most 1 MiB per chunk.

The downloader pins the blob's ETag after its first request (If-Match on the following ranges),
so a blob overwritten mid-download fails the stream instead of mixing two versions. Range
checks and the empty-object answers are object_reads.read_window's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from services.storage.adapters.azure_blob.config import BlobConfig
from services.storage.adapters.azure_blob.errors import ErrorContext, RetryPolicy, call, map_error
from services.storage.adapters.azure_blob.metadata import info_from_properties
from services.storage.adapters.object_metadata import total_size_from_range
from services.storage.adapters.object_reads import Read, read_window
from services.storage.ports import ObjectInfo

CHUNK_SIZE = 1024 * 1024  # what one DownloadObject message carries at most


async def head_blob(blob: Any, cfg: BlobConfig, policy: RetryPolicy, key: str) -> ObjectInfo:
    props = await call(blob.get_blob_properties, ErrorContext(cfg.label, key), policy)
    return info_from_properties(key, props)


async def read_blob(
    blob: Any, cfg: BlobConfig, policy: RetryPolicy, key: str, start: int, length: int | None
) -> Read:
    ctx = ErrorContext(cfg.label, key)

    async def fetch() -> Read:
        # Azure answers 416 to an explicit offset 0 on an empty blob: no range for "everything".
        window: dict[str, int] = {} if start == 0 and length is None else {"offset": start}
        if length is not None:
            window["length"] = length
        downloader = await call(lambda: blob.download_blob(max_concurrency=1, **window), ctx, policy)
        props = downloader.properties
        info = info_from_properties(key, props, size=total_size_from_range(props.content_range))
        return info, _stream(downloader, ctx)

    return await read_window(start, length, lambda: head_blob(blob, cfg, policy, key), fetch)


async def _stream(downloader: Any, ctx: ErrorContext) -> AsyncIterator[bytes]:
    try:
        async for piece in downloader.chunks():
            view = memoryview(piece)
            for i in range(0, len(view), CHUNK_SIZE):
                yield bytes(view[i : i + CHUNK_SIZE])
    except Exception as exc:
        raise map_error(exc, ctx) from exc
