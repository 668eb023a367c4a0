"""Page tokens shared by the adapters: opaque to clients, they carry the last key returned.

A token resumes strictly after that key, so pages stay stable while other keys are written
(no duplicates, nothing skipped among keys that existed throughout). The token also carries a
short fingerprint of the query it belongs to; a token replayed on another query is refused
instead of silently answering something else.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence

from google.protobuf.message import Message

from services.common.errors import InvalidArgument

# A page's messages together stay under this many bytes (the largest message is 8 MiB, and JSON
# through Envoy's transcoder grows base64 bytes by a third): a big page is cut short, with a
# token for the rest, never refused.
PAGE_BYTES = 4 * 1024 * 1024


def scope_of(*parts: str) -> str:
    """Fingerprint of the query a token belongs to (collection, partition, condition, order...)."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(digest[:9]).decode()


def encode_page_token(last_key: str, scope: str) -> str:
    payload = json.dumps({"k": last_key, "s": scope}, ensure_ascii=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_page_token(token: str, scope: str, field: str = "page_token") -> str:
    """The last key of the previous page; InvalidArgument if the token is malformed or was
    issued for a different query."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        last = data["k"]
        issued_for = data["s"]
        if not isinstance(last, str) or not isinstance(issued_for, str):
            raise ValueError("bad token fields")
        last.encode("utf-8")  # a forged token could carry a lone surrogate
    except (ValueError, KeyError, TypeError, UnicodeError) as exc:
        raise InvalidArgument("malformed page token", field_violations=[(field, "malformed")]) from exc
    if issued_for != scope:
        raise InvalidArgument(
            "page token belongs to a different query",
            field_violations=[(field, "issued for a different query")],
        )
    return last


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """Smallest byte string greater than every string starting with prefix (None: no bound)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


def fit_page(messages: Sequence[Message], limit: int = PAGE_BYTES) -> int:
    """How many leading messages fit in `limit` bytes (at least one: a single item is bounded
    by its own size limit)."""
    total = 0
    for i, message in enumerate(messages):
        total += message.ByteSize() + 6  # field tag and length prefix in the response
        if total > limit:
            return max(i, 1)
    return len(messages)
