"""What the cloud object adapters' metadata handling shares.

User metadata travels as HTTP headers on S3 and Azure Blob alike, so values must be
header-safe ASCII: anything else (non-ASCII, control characters, edge whitespace, the empty
string, or a value that already looks encoded) is stored RFC 2047 style (=?UTF-8?B?...?=) and
decoded on read. Each backend has its own name scheme and size limit (its metadata.py).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from services.common.errors import InvalidArgument

DEFAULT_CONTENT_TYPE = "application/octet-stream"
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


def within_limit(metadata: dict[str, str], max_bytes: int, backend: str, shown: str) -> dict[str, str]:
    """metadata unchanged, or InvalidArgument when names and values pass the backend's total."""
    if sum(len(k) + len(v) for k, v in metadata.items()) > max_bytes:
        limit = f"{max_bytes // 1024} KB"
        raise InvalidArgument(
            f"user metadata exceeds what {shown} stores ({limit} in total)",
            field_violations=[("user_metadata", f"exceeds {limit} in total on the {backend} backend")],
        )
    return metadata


def clean_etag(etag: str | None) -> str:
    return (etag or "").strip('"')


def total_size_from_range(content_range: str | None) -> int | None:
    """'bytes 1-2/5' -> 5."""
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None


def sha256_of(metadata: Mapping[str, str], name: str) -> str:
    """Our SHA-256 entry, whatever case the backend returned the name in."""
    return next((v for k, v in metadata.items() if k.lower() == name), "")
