"""Listing: List Blobs pages resumed with the service's continuation marker.

Azure's marker is opaque (it cannot be built from a key, so there is no StartAfter), but it
names where the next page starts, so it is as stable as a last-key token: the page token wraps
it with the query's fingerprint (services.storage.paging). include=metadata brings content
type, size, user metadata and our SHA-256 in the same call. Blobs with only uncommitted blocks
(an aborted upload) are not listed. Names are stored by names.py so that the service's UTF-16
order is the contract's byte order.
"""

from __future__ import annotations

from typing import Any

from services.storage.adapters.azure_blob.config import BlobConfig
from services.storage.adapters.azure_blob.errors import ErrorContext, RetryPolicy, call
from services.storage.adapters.azure_blob.metadata import info_from_properties
from services.storage.adapters.azure_blob.names import from_blob_name, to_blob_name
from services.storage.adapters.object_reads import page_size_of
from services.storage.paging import decode_page_token, encode_page_token, scope_of
from services.storage.ports import ObjectInfo, ObjectPage


async def list_blobs(
    container: Any, cfg: BlobConfig, policy: RetryPolicy, prefix: str, page_size: int, page_token: str
) -> ObjectPage:
    scope = scope_of("objects", prefix)
    size = page_size_of(page_size)
    marker = decode_page_token(page_token, scope) if page_token else None

    async def one_page() -> tuple[list[ObjectInfo], str]:
        pager = container.list_blobs(
            name_starts_with=to_blob_name(prefix) or None, include=["metadata"], results_per_page=size
        ).by_page(continuation_token=marker)
        infos: list[ObjectInfo] = []
        async for page in pager:
            async for item in page:
                infos.append(info_from_properties(from_blob_name(item.name), item))
            break  # one service page is one of ours
        return infos, pager.continuation_token or ""

    infos, next_marker = await call(one_page, ErrorContext(cfg.label), policy)
    token = encode_page_token(next_marker, scope) if next_marker else ""
    return ObjectPage(objects=infos, next_page_token=token)
