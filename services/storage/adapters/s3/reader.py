"""Streamed and ranged reads: one GetObject whose body is handed out chunk by chunk.

Memory stays bounded by the chunk size; the HTTP response is released when the consumer stops
early (the generator's finally), so an abandoned download does not hold a pooled connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from services.common.errors import InvalidArgument
from services.storage.adapters.s3.config import S3Config
from services.storage.adapters.s3.errors import ErrorContext, RetryPolicy, call, map_error
from services.storage.adapters.s3.metadata import info_from_response, total_size_from_range
from services.storage.ports import ObjectInfo

CHUNK_SIZE = 1024 * 1024  # what one DownloadObject message carries at most


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def head_object(client: Any, cfg: S3Config, policy: RetryPolicy, key: str) -> ObjectInfo:
    ctx = ErrorContext(cfg.label, key)
    resp = await call(lambda: client.head_object(Bucket=cfg.bucket, Key=key), ctx, policy)
    return info_from_response(key, resp)


def _past_end() -> InvalidArgument:
    return InvalidArgument(
        "range start is past the end of the object", field_violations=[("range_start", "past the end")]
    )


async def read_object(
    client: Any, cfg: S3Config, policy: RetryPolicy, key: str, start: int, length: int | None
) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
    if start < 0 or (length is not None and length < 0):
        raise InvalidArgument("range must not be negative", field_violations=[("range_start", "negative")])
    ctx = ErrorContext(cfg.label, key)
    if length == 0:
        info = await head_object(client, cfg, policy, key)
        if start > 0 and start >= info.size:
            raise _past_end()
        return info, _empty()
    params: dict[str, Any] = {"Bucket": cfg.bucket, "Key": key}
    if start > 0 or length is not None:
        params["Range"] = f"bytes={start}-" + ("" if length is None else str(start + length - 1))
    try:
        resp = await call(lambda: client.get_object(**params), ctx, policy)
    except InvalidArgument:
        # S3 answers 416 for any range on an empty object; the port allows start == size == 0.
        info = await head_object(client, cfg, policy, key)
        if start == 0 and info.size == 0:
            return info, _empty()
        raise _past_end() from None
    size = total_size_from_range(resp.get("ContentRange"))
    info = info_from_response(key, resp, size=size)
    return info, _stream(resp["Body"], ctx)


async def _stream(body: Any, ctx: ErrorContext) -> AsyncIterator[bytes]:
    try:
        async for chunk in body.iter_chunks(CHUNK_SIZE):
            yield chunk
    except Exception as exc:
        raise map_error(exc, ctx) from exc
    finally:
        # Returns the connection to the pool when fully read, closes it when abandoned early.
        body.release()
