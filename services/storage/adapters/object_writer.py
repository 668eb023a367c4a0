"""The streaming object write every cloud object adapter shares; adapters supply primitives.

What lives here, once: buffering the caller's chunks into parts of the binding's part size,
the SHA-256 computed while streaming, one single-request write for an object of at most one
part, parallel part uploads bounded by the binding's concurrency (memory stays at one part being
filled plus `concurrency` parts in flight, whatever the object's size), the part-count limit,
surfacing a failed part while the stream is still running, and, on any failure or
cancellation, cancelling the in-flight parts and aborting the upload (shielded, so a second
cancellation cannot skip it, and a cleanup failure never hides the failure that caused it).

Also once: the write's description (ObjectWrite: key, content type defaulted, user metadata,
create-only), the metadata check before any byte moves, create-only applied where the object
becomes visible (the single-request write or the commit, never a part), and the description
of what was written when the object is replaced before it can be read back.

What an adapter supplies (ObjectTarget / PartUpload): check its metadata limits, start an
upload, write one part, complete with the digest, abort; the single-request write. Each gets
the ObjectWrite, whose `create_only` says to send the backend's If-None-Match: *.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from services.common.errors import InvalidArgument
from services.storage.adapters.object_errors import ErrorContext
from services.storage.adapters.object_metadata import DEFAULT_CONTENT_TYPE
from services.storage.ports import ObjectInfo

P = TypeVar("P")
P_co = TypeVar("P_co", covariant=True)


@dataclass(frozen=True)
class WriteResult:
    etag: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ObjectWrite:
    """One write as every primitive sees it."""

    ctx: ErrorContext  # label, key, create_only: what errors of this write name
    content_type: str
    user_metadata: Mapping[str, str]

    @property
    def key(self) -> str:
        return self.ctx.key or ""

    @property
    def create_only(self) -> bool:
        """Send If-None-Match: * where the object becomes visible (single write or commit)."""
        return self.ctx.create_only


class PartUpload(Protocol[P]):
    """One started multipart upload (S3 multipart upload, Azure staged blocks)."""

    async def write_part(self, number: int, data: bytes) -> P:
        """Upload part `number` (1-based); returns what complete needs to name it."""
        ...

    async def complete(self, parts: Sequence[P], sha256: str, size: int) -> str:
        """Commit the parts in order as the object; returns its etag."""
        ...

    async def abort(self) -> None:
        """Drop what was uploaded (the in-flight parts were cancelled already)."""
        ...


class ObjectTarget(Protocol[P]):
    """A backend's write primitives (one per store; the write is passed to each call)."""

    part_size: int
    concurrency: int
    max_parts: int
    part_noun: str  # "parts", "blocks": for the too-large message

    def check_metadata(self, write: ObjectWrite) -> None:
        """Refuse metadata the backend cannot store (InvalidArgument), before any byte moves."""
        ...

    async def put_single(self, write: ObjectWrite, data: bytes, sha256: str) -> str:
        """Write an object of at most one part in one request; returns its etag."""
        ...

    async def start(self, write: ObjectWrite) -> PartUpload[P]: ...


class _Parts(Generic[P]):
    """The parts of one upload, sent in parallel, at most `concurrency` at a time."""

    def __init__(self, target: ObjectTarget[P], upload: PartUpload[P]) -> None:
        self._target, self.upload = target, upload
        self._slots = asyncio.Semaphore(target.concurrency)
        self._tasks: list[asyncio.Task[P]] = []

    async def add(self, buf: bytearray, size: int) -> None:
        """Send the first `size` bytes of buf as the next part (removed from buf). Waits for a
        free slot before copying them out, so at most `concurrency` parts exist."""
        number = len(self._tasks) + 1
        if number > self._target.max_parts:
            noun = self._target.part_noun
            raise InvalidArgument(
                f"object too large: more than {self._target.max_parts} {noun} of "
                f"{self._target.part_size} bytes; raise the binding's part_size_bytes"
            )
        await self._slots.acquire()
        for task in self._tasks:  # surface a failed part now, not at the end of the stream
            if task.done() and task.exception() is not None:
                self._slots.release()
                await task
        with memoryview(buf) as view:
            data = bytes(view[:size])
        del buf[:size]
        self._tasks.append(asyncio.create_task(self._send(number, data)))

    async def _send(self, number: int, data: bytes) -> P:
        try:
            return await self.upload.write_part(number, data)
        finally:
            self._slots.release()

    async def complete(self, sha256: str, size: int) -> str:
        parts = list(await asyncio.gather(*self._tasks))
        return await self.upload.complete(parts, sha256, size)

    async def abort(self) -> None:
        for task in self._tasks:
            task.cancel()
        # Wait for in-flight parts: a part landing after the abort would be an orphan.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.upload.abort()


async def shielded(cleanup: Awaitable[Any]) -> None:
    """Run cleanup to the end even if the caller is cancelled again meanwhile; a cleanup failure
    never hides the failure that caused it."""
    task = asyncio.ensure_future(cleanup)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise
    except Exception:  # noqa: S110 - the original error is re-raised by the caller
        pass


async def write_object(
    target: ObjectTarget[P],
    label: str,
    key: str,
    chunks: AsyncIterator[bytes],
    *,
    content_type: str,
    user_metadata: Mapping[str, str],
    if_none_match: bool,
) -> WriteResult:
    write = ObjectWrite(
        ErrorContext(label, key, create_only=if_none_match),
        content_type or DEFAULT_CONTENT_TYPE,
        user_metadata,
    )
    target.check_metadata(write)
    return await _stream(target, write, chunks)


async def write_and_describe(
    target: ObjectTarget[P],
    label: str,
    key: str,
    chunks: AsyncIterator[bytes],
    head: Callable[[], Awaitable[ObjectInfo]],
    *,
    content_type: str,
    user_metadata: Mapping[str, str],
    if_none_match: bool,
) -> ObjectInfo:
    """Write, then describe the object as the backend stores it (head); if it was overwritten
    or deleted right after our write, describe what we wrote."""
    result = await write_object(
        target,
        label,
        key,
        chunks,
        content_type=content_type,
        user_metadata=user_metadata,
        if_none_match=if_none_match,
    )
    try:
        return await head()
    except Exception:
        now = datetime.now(UTC)
        return ObjectInfo(
            key=key,
            size=result.size,
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            sha256=result.sha256,
            etag=result.etag,
            created=now,
            updated=now,
            user_metadata=dict(user_metadata),
        )


async def _stream(target: ObjectTarget[P], write: ObjectWrite, chunks: AsyncIterator[bytes]) -> WriteResult:
    hasher = hashlib.sha256()
    size = 0
    buf = bytearray()
    parts: _Parts[P] | None = None
    try:
        async for chunk in chunks:
            hasher.update(chunk)
            size += len(chunk)
            buf += chunk
            # Strictly greater: an object of exactly one part size stays a single request.
            while len(buf) > target.part_size:
                if parts is None:
                    parts = _Parts(target, await target.start(write))
                await parts.add(buf, target.part_size)
        digest = hasher.hexdigest()
        if parts is None:
            return WriteResult(await target.put_single(write, bytes(buf), digest), size, digest)
        if buf:
            await parts.add(buf, len(buf))
        return WriteResult(await parts.complete(digest, size), size, digest)
    except BaseException:
        if parts is not None:
            await shielded(parts.abort())
        raise
