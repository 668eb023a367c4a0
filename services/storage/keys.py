"""Object key rules, re-checked by the service for every RPC that takes a key.

The proto carries the same rule for uploads, but REST paths ({key=**}) and the read/delete
requests reach the servicer with only a length check, so the service is the one place that
decides what a key may be, whatever the backend.
"""

from __future__ import annotations

from services.common.errors import InvalidArgument

MAX_KEY_BYTES = 1024


def key_problem(key: str) -> str | None:
    """Why key is not acceptable, or None."""
    if not key:
        return "key must not be empty"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"key must be at most {MAX_KEY_BYTES} bytes"
    if "\x00" in key:
        return "key must not contain NUL"
    if key.startswith("/") or key.endswith("/"):
        return "key must not start or end with '/'"
    if "//" in key:
        return "key must not contain '//'"
    if any(segment in (".", "..") for segment in key.split("/")):
        return "key must not contain '.' or '..' segments"
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in key):
        return "key must be valid UTF-8"
    return None


def validate_object_key(key: str, field: str = "key") -> str:
    problem = key_problem(key)
    if problem is not None:
        raise InvalidArgument(f"invalid object key: {problem}", field_violations=[(field, problem)])
    return key
