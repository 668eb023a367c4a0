"""Opaque page tokens (AIP-158) for listings a service holds whole: the position to continue
after, bound to the query.

Listings ordered by id (tenants, users) carry the last id, so "everything after this id" is
stable under concurrent inserts and deletes. Listings computed per call (usage rows, models)
carry an offset into the computed list (offset_page). A token only continues the query it came
from; another query gets INVALID_ARGUMENT. A token is not a secret: it can only move the start
of a listing the caller may already read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import TypeVar

from services.common.errors import InvalidArgument

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested <= 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def _scope_tag(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def encode(after: str, scope: str) -> str:
    raw = json.dumps({"a": after, "q": _scope_tag(scope)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(token: str, scope: str) -> str | None:
    """The id to continue after, or None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        after, tag = data["a"], data["q"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(
            "invalid page_token", field_violations=[("page_token", "not a token from this listing")]
        ) from exc
    if not isinstance(after, str) or tag != _scope_tag(scope):
        raise InvalidArgument(
            "invalid page_token",
            field_violations=[("page_token", "belongs to a listing with other parameters")],
        )
    return after


def offset_page(
    entries: Sequence[T], requested: int, token: str, scope: str, default: int = DEFAULT_PAGE_SIZE
) -> tuple[Sequence[T], str]:
    """One page of a computed listing and the token for the next ("" on the last page)."""
    after = decode(token, scope)
    start = 0
    if after is not None:
        if not after.isdigit() or int(after) > len(entries):
            raise InvalidArgument("invalid page_token", field_violations=[("page_token", "out of range")])
        start = int(after)
    size = min(requested, MAX_PAGE_SIZE) if requested > 0 else default
    end = start + size
    return entries[start:end], encode(str(end), scope) if end < len(entries) else ""
