"""What the cloud object adapters' reads share: range checks, the empty-window answers, and a
content stream whose failures come out mapped.

read_window() is the one read: a zero-length window is a HEAD; a backend that refuses a range
on an empty object (S3 and Azure answer 416 even for "from 0") is asked for its size, since the
port allows start == size == 0; any other refused range is past the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from services.common.errors import InvalidArgument
from services.storage.adapters.object_errors import past_end
from services.storage.ports import ObjectInfo

Read = tuple[ObjectInfo, AsyncIterator[bytes]]
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


async def empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def read_window(
    start: int,
    length: int | None,
    head: Callable[[], Awaitable[ObjectInfo]],
    fetch: Callable[[], Awaitable[Read]],
) -> Read:
    if start < 0 or (length is not None and length < 0):
        raise InvalidArgument("range must not be negative", field_violations=[("range_start", "negative")])
    if length == 0:
        info = await head()
        if start > 0 and start >= info.size:
            raise past_end()
        return info, empty()
    try:
        info, stream = await fetch()
    except InvalidArgument:
        info = await head()
        if start == 0 and info.size == 0:
            return info, empty()
        raise past_end() from None
    if start > 0 and start >= info.size:
        raise past_end()  # a backend may answer a range at the very end with no content
    return info, stream


def page_size_of(requested: int) -> int:
    """The service page size for a requested one (0 or less: the default)."""
    return DEFAULT_PAGE_SIZE if requested <= 0 else min(requested, MAX_PAGE_SIZE)
