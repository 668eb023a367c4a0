"""How MAKOTO object metadata lives in S3: user metadata, the SHA-256, the content type.

S3 user metadata travels as HTTP headers (x-amz-meta-*); values are encoded as
object_metadata.py says. User keys are stored as "u-<key>" so they can never collide with the adapter's own
"makoto-sha256". S3 limits user metadata to 2 KB; that is checked before sending.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.storage.adapters.object_metadata import (
    DEFAULT_CONTENT_TYPE,
    clean_etag,
    decode_value,
    encode_value,
    within_limit,
)
from services.storage.ports import ObjectInfo

SHA256_KEY = "makoto-sha256"
USER_PREFIX = "u-"
MAX_METADATA_BYTES = 2048


def to_s3_metadata(user_metadata: Mapping[str, str], sha256: str | None) -> dict[str, str]:
    out = {USER_PREFIX + k: encode_value(v) for k, v in user_metadata.items()}
    if sha256 is not None:
        out[SHA256_KEY] = sha256
    return within_limit(out, MAX_METADATA_BYTES, "s3", "S3")


def user_metadata_of(metadata: Mapping[str, str]) -> dict[str, str]:
    return {k[len(USER_PREFIX) :]: decode_value(v) for k, v in metadata.items() if k.startswith(USER_PREFIX)}


def info_from_response(key: str, resp: Mapping[str, Any], size: int | None = None) -> ObjectInfo:
    """ObjectInfo from a HeadObject/GetObject response (size: the whole object's, for ranges)."""
    metadata: Mapping[str, str] = resp.get("Metadata") or {}
    modified: datetime = resp.get("LastModified") or datetime.now(UTC)
    # S3 keeps no creation time: an overwrite is a new object, so created == last modified.
    return ObjectInfo(
        key=key,
        size=int(resp.get("ContentLength", 0)) if size is None else size,
        content_type=resp.get("ContentType") or DEFAULT_CONTENT_TYPE,
        sha256=metadata.get(SHA256_KEY, ""),
        etag=clean_etag(resp.get("ETag")),
        created=modified,
        updated=modified,
        user_metadata=user_metadata_of(metadata),
    )
