"""Streamed and ranged reads with the SDK's downloader, in ranged GETs of `download_chunk` bytes
(the client's max_single_get_size / max_chunk_get_size), re-cut to at most 1 MiB per chunk.

The downloader pins the blob's ETag after its first request (If-Match on the following ranges),
so a blob overwritten mid-download fails the stream instead of mixing two versions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from services.common.errors import InvalidArgument
from services.storage.adapters.azure_blob.config import BlobConfig
from services.storage.adapters.azure_blob.errors import ErrorContext, RetryPolicy, call, map_error
from services.storage.adapters.azure_blob.metadata import info_from_properties, total_size_from_range
from services.storage.ports import ObjectInfo

CHUNK_SIZE = 1024 * 1024  # what one DownloadObject message carries at most


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


def _past_end() -> InvalidArgument:
    return InvalidArgument(
        "range start is past the end of the object", field_violations=[("range_start", "past the end")]
    )


async def head_blob(blob: Any, cfg: BlobConfig, policy: RetryPolicy, key: str) -> ObjectInfo:
    props = await call(blob.get_blob_properties, ErrorContext(cfg.label, key), policy)
    return info_from_properties(key, props)


async def read_blob(
    blob: Any, cfg: BlobConfig, policy: RetryPolicy, key: str, start: int, length: int | None
) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
    if start < 0 or (length is not None and length < 0):
        raise InvalidArgument("range must not be negative", field_violations=[("range_start", "negative")])
    ctx = ErrorContext(cfg.label, key)
    if length == 0:
        info = await head_blob(blob, cfg, policy, key)
        if start > 0 and start >= info.size:
            raise _past_end()
        return info, _empty()
    # Azure answers 416 to an explicit offset 0 on an empty blob: no range at all for "everything".
    window: dict[str, int] = {} if start == 0 and length is None else {"offset": start}
    if length is not None:
        window["length"] = length
    try:
        downloader = await call(lambda: blob.download_blob(max_concurrency=1, **window), ctx, policy)
    except InvalidArgument:
        info = await head_blob(blob, cfg, policy, key)
        if start == 0 and info.size == 0:
            return info, _empty()
        raise _past_end() from None
    props = downloader.properties
    info = info_from_properties(key, props, size=total_size_from_range(props.content_range))
    if start > 0 and start >= info.size:
        raise _past_end()  # the SDK turns a range at the very end into an empty download
    return info, _stream(downloader, ctx)


async def _stream(downloader: Any, ctx: ErrorContext) -> AsyncIterator[bytes]:
    try:
        async for piece in downloader.chunks():
            view = memoryview(piece)
            for i in range(0, len(view), CHUNK_SIZE):
                yield bytes(view[i : i + CHUNK_SIZE])
    except Exception as exc:
        raise map_error(exc, ctx) from exc
