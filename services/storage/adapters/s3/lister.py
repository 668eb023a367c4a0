"""Listing: ListObjectsV2 pages resumed with StartAfter, so page tokens carry the last key.

ListObjectsV2 returns neither content type nor user metadata nor our SHA-256, which the
contract's ObjectMetadata carries, so each listed key is completed with a HEAD (bounded
parallelism). A key deleted between the list and its HEAD is left out of the page; the token
still resumes after the last listed key, so nothing is skipped or repeated.
"""

from __future__ import annotations

import asyncio
from typing import Any

from services.common.errors import NotFound
from services.storage.adapters.object_reads import page_size_of
from services.storage.adapters.s3.config import S3Config
from services.storage.adapters.s3.errors import ErrorContext, RetryPolicy, call
from services.storage.adapters.s3.reader import head_object
from services.storage.paging import decode_page_token, encode_page_token, scope_of
from services.storage.ports import ObjectInfo, ObjectPage


async def list_objects(
    client: Any, cfg: S3Config, policy: RetryPolicy, prefix: str, page_size: int, page_token: str
) -> ObjectPage:
    scope = scope_of("objects", prefix)
    size = page_size_of(page_size)
    params: dict[str, Any] = {"Bucket": cfg.bucket, "MaxKeys": size}
    if prefix:
        params["Prefix"] = prefix
    if page_token:
        params["StartAfter"] = decode_page_token(page_token, scope)
    resp = await call(lambda: client.list_objects_v2(**params), ErrorContext(cfg.label), policy)
    keys = [str(item["Key"]) for item in resp.get("Contents", [])]
    slots = asyncio.Semaphore(cfg.list_head_concurrency)

    async def describe(key: str) -> ObjectInfo | None:
        async with slots:
            try:
                return await head_object(client, cfg, policy, key)
            except NotFound:
                return None

    infos = await asyncio.gather(*(describe(k) for k in keys))
    token = encode_page_token(keys[-1], scope) if resp.get("IsTruncated") and keys else ""
    return ObjectPage(objects=[i for i in infos if i is not None], next_page_token=token)
