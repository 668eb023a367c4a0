"""Streamed and ranged reads: one GetObject whose body is handed out chunk by chunk.

Memory stays bounded by the chunk size; the HTTP response is released when the consumer stops
early (the generator's finally), so an abandoned download does not hold a pooled connection.
Range checks and the empty-object answers are object_reads.read_window's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from services.storage.adapters.object_metadata import total_size_from_range
from services.storage.adapters.object_reads import Read, read_window
from services.storage.adapters.s3.config import S3Config
from services.storage.adapters.s3.errors import ErrorContext, RetryPolicy, call, map_error
from services.storage.adapters.s3.metadata import info_from_response
from services.storage.ports import ObjectInfo

CHUNK_SIZE = 1024 * 1024  # what one DownloadObject message carries at most


async def head_object(client: Any, cfg: S3Config, policy: RetryPolicy, key: str) -> ObjectInfo:
    ctx = ErrorContext(cfg.label, key)
    resp = await call(lambda: client.head_object(Bucket=cfg.bucket, Key=key), ctx, policy)
    return info_from_response(key, resp)


async def read_object(
    client: Any, cfg: S3Config, policy: RetryPolicy, key: str, start: int, length: int | None
) -> Read:
    ctx = ErrorContext(cfg.label, key)

    async def fetch() -> Read:
        params: dict[str, Any] = {"Bucket": cfg.bucket, "Key": key}
        if start > 0 or length is not None:
            params["Range"] = f"bytes={start}-" + ("" if length is None else str(start + length - 1))
        resp = await call(lambda: client.get_object(**params), ctx, policy)
        size = total_size_from_range(resp.get("ContentRange"))
        return info_from_response(key, resp, size=size), _stream(resp["Body"], ctx)

    return await read_window(start, length, lambda: head_object(client, cfg, policy, key), fetch)


async def _stream(body: Any, ctx: ErrorContext) -> AsyncIterator[bytes]:
    try:
        async for chunk in body.iter_chunks(CHUNK_SIZE):
            yield chunk
    except Exception as exc:
        raise map_error(exc, ctx) from exc
    finally:
        # Returns the connection to the pool when fully read, closes it when abandoned early.
        body.release()
