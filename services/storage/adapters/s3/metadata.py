"""How MAKOTO object metadata lives in S3: user metadata, the SHA-256, the content type.

S3 user metadata travels as HTTP headers (x-amz-meta-*), so values must be header-safe ASCII:
anything else (non-ASCII, control characters, edge whitespace, the empty string, or a value
that already looks encoded) is stored RFC 2047 style (=?UTF-8?B?...?=) and decoded on read.
User keys are stored as "u-<key>" so they can never collide with the adapter's own
"makoto-sha256". S3 limits user metadata to 2 KB; that is checked before sending.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.common.errors import InvalidArgument
from services.storage.ports import ObjectInfo

SHA256_KEY = "makoto-sha256"
USER_PREFIX = "u-"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_METADATA_BYTES = 2048
_ENCODED_HEAD, _ENCODED_TAIL = "=?UTF-8?B?", "?="


def encode_value(value: str) -> str:
    plain = (
        value != ""
        and value.strip() == value
        and all(0x20 <= ord(c) < 0x7F for c in value)
        and not value.startswith("=?")
    )
    if plain:
        return value
    return _ENCODED_HEAD + base64.b64encode(value.encode("utf-8")).decode("ascii") + _ENCODED_TAIL


def decode_value(value: str) -> str:
    if value.startswith(_ENCODED_HEAD) and value.endswith(_ENCODED_TAIL):
        body = value[len(_ENCODED_HEAD) : len(value) - len(_ENCODED_TAIL)]
        try:
            return base64.b64decode(body, validate=True).decode("utf-8")
        except ValueError:
            return value
    return value


def to_s3_metadata(user_metadata: Mapping[str, str], sha256: str | None) -> dict[str, str]:
    out = {USER_PREFIX + k: encode_value(v) for k, v in user_metadata.items()}
    if sha256 is not None:
        out[SHA256_KEY] = sha256
    if sum(len(k) + len(v) for k, v in out.items()) > MAX_METADATA_BYTES:
        raise InvalidArgument(
            "user metadata exceeds what S3 stores (2 KB in total)",
            field_violations=[("user_metadata", "exceeds 2 KB in total on the s3 backend")],
        )
    return out


def user_metadata_of(metadata: Mapping[str, str]) -> dict[str, str]:
    return {k[len(USER_PREFIX) :]: decode_value(v) for k, v in metadata.items() if k.startswith(USER_PREFIX)}


def clean_etag(etag: str | None) -> str:
    return (etag or "").strip('"')


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


def total_size_from_range(content_range: str | None) -> int | None:
    """'bytes 1-2/5' -> 5."""
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None
