"""How MAKOTO object metadata lives in Azure Blob: user metadata, the SHA-256, the content type.

Azure metadata names must be C# identifiers (letters, digits, '_'; not starting with a digit),
while our keys may hold '-' and start with a digit: a user key is stored as "u_" + key with '_'
and '-' escaped as "_5f" / "_2d" (reversible, and it can never collide with "makoto_sha256").
Values travel as HTTP headers, so non-ASCII, control characters, edge whitespace, the empty
string and values that look encoded are stored RFC 2047 style (=?UTF-8?B?...?=). Azure limits
metadata to 8 KB in total; that is checked before sending.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.common.errors import InvalidArgument
from services.storage.ports import ObjectInfo

SHA256_KEY = "makoto_sha256"
USER_PREFIX = "u_"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_METADATA_BYTES = 8 * 1024
_ENCODED_HEAD, _ENCODED_TAIL = "=?UTF-8?B?", "?="
_ESCAPE = re.compile(r"_([0-9a-f]{2})")
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


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
    if sum(len(k) + len(v) for k, v in out.items()) > MAX_METADATA_BYTES:
        raise InvalidArgument(
            "user metadata exceeds what Azure Blob stores (8 KB in total)",
            field_violations=[("user_metadata", "exceeds 8 KB in total on the azure_blob backend")],
        )
    return out


def user_metadata_of(metadata: Mapping[str, str]) -> dict[str, str]:
    # Azure returns metadata names with the case they were written in; ours are lowercase.
    return {
        decode_name(k.lower()): decode_value(v)
        for k, v in metadata.items()
        if k.lower().startswith(USER_PREFIX)
    }


def clean_etag(etag: str | None) -> str:
    return (etag or "").strip('"')


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
        sha256=next((v for k, v in metadata.items() if k.lower() == SHA256_KEY), ""),
        etag=clean_etag(props.etag),
        created=props.creation_time or modified,
        updated=modified,
        user_metadata=user_metadata_of(metadata),
    )


def total_size_from_range(content_range: str | None) -> int | None:
    """'bytes 1-2/5' -> 5."""
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None
