"""How MAKOTO object metadata lives in Azure Blob: user metadata, the SHA-256, the content type.

Azure metadata names must be C# identifiers (letters, digits, '_'; not starting with a digit),
while our keys may hold '-' and start with a digit: a user key is stored as "u_" + key with '_'
and '-' escaped as "_5f" / "_2d" (reversible, and it can never collide with "makoto_sha256").
Values are encoded as object_metadata.py says. Azure limits
metadata to 8 KB in total; that is checked before sending.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.storage.adapters.object_metadata import (
    DEFAULT_CONTENT_TYPE,
    clean_etag,
    decode_value,
    encode_value,
    sha256_of,
    within_limit,
)
from services.storage.ports import ObjectInfo

SHA256_KEY = "makoto_sha256"
USER_PREFIX = "u_"
MAX_METADATA_BYTES = 8 * 1024
_ESCAPE = re.compile(r"_([0-9a-f]{2})")
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def encode_name(key: str) -> str:
    """Keep [a-z0-9]; every other UTF-8 byte becomes _xx (Azure names are case-insensitive)."""
    return USER_PREFIX + "".join(
        chr(b) if chr(b) in _PLAIN else f"_{b:02x}" for b in key.encode("utf-8", "surrogatepass")
    )


def decode_name(name: str) -> str:
    out = bytearray()
    body, i = name[len(USER_PREFIX) :], 0
    while i < len(body):
        m = _ESCAPE.match(body, i)
        if m:
            out.append(int(m.group(1), 16))
            i = m.end()
        else:
            out += body[i].encode()
            i += 1
    return out.decode("utf-8", "replace")


def to_blob_metadata(user_metadata: Mapping[str, str], sha256: str | None) -> dict[str, str]:
    out = {encode_name(k): encode_value(v) for k, v in user_metadata.items()}
    if sha256 is not None:
        out[SHA256_KEY] = sha256
    return within_limit(out, MAX_METADATA_BYTES, "azure_blob", "Azure Blob")


def user_metadata_of(metadata: Mapping[str, str]) -> dict[str, str]:
    # Azure returns metadata names with the case they were written in; ours are lowercase.
    return {
        decode_name(k.lower()): decode_value(v)
        for k, v in metadata.items()
        if k.lower().startswith(USER_PREFIX)
    }


def info_from_properties(key: str, props: Any, size: int | None = None) -> ObjectInfo:
    """ObjectInfo from BlobProperties (get_blob_properties, a download, or a list item);
    size: the whole blob's, when props describe a ranged download."""
    metadata: Mapping[str, str] = props.metadata or {}
    modified: datetime = props.last_modified or datetime.now(UTC)
    settings = props.content_settings
    return ObjectInfo(
        key=key,
        size=int(props.size or 0) if size is None else size,
        content_type=(settings.content_type if settings else None) or DEFAULT_CONTENT_TYPE,
        sha256=sha256_of(metadata, SHA256_KEY),
        etag=clean_etag(props.etag),
        created=props.creation_time or modified,
        updated=modified,
        user_metadata=user_metadata_of(metadata),
    )
