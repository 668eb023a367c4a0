"""Byte streams for the object-store tests."""

from __future__ import annotations

import asyncio
import hashlib
import random
import tracemalloc
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

MIB = 1024 * 1024
T = TypeVar("T")


def pattern(size: int, seed: int = 0) -> bytes:
    """Deterministic pseudo-random bytes (a misplaced or repeated part changes the hash)."""
    return random.Random(seed).randbytes(size)


async def chunked(data: bytes, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


async def failing_after(data: bytes, fail_at: int, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    """Yields data until fail_at bytes were sent, then raises (a client that breaks mid-upload)."""
    sent = 0
    for i in range(0, len(data), chunk):
        if sent >= fail_at:
            raise ConnectionResetError("client went away")
        piece = data[i : i + chunk]
        sent += len(piece)
        yield piece


async def stalling_after(
    data: bytes, stall_at: int, reached: asyncio.Event, chunk: int = 256 * 1024
) -> AsyncIterator[bytes]:
    """Yields data until stall_at bytes, sets `reached`, then waits forever (to be cancelled)."""
    sent = 0
    for i in range(0, len(data), chunk):
        if sent >= stall_at:
            reached.set()
            await asyncio.Event().wait()
        piece = data[i : i + chunk]
        sent += len(piece)
        yield piece


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in stream])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def generated(total: int, chunk: int = MIB, seed: int = 0) -> AsyncIterator[bytes]:
    """total bytes produced on the fly (never held whole), deterministic per seed."""
    rnd = random.Random(seed)
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        yield rnd.randbytes(n)
        sent += n


def generated_sha(total: int, chunk: int = MIB, seed: int = 0) -> str:
    rnd = random.Random(seed)
    digest = hashlib.sha256()
    sent = 0
    while sent < total:
        n = min(chunk, total - sent)
        digest.update(rnd.randbytes(n))
        sent += n
    return digest.hexdigest()


async def traced_peak(work: Awaitable[T]) -> tuple[T, int]:
    """Run work under tracemalloc; (result, peak bytes of Python allocations meanwhile)."""
    tracemalloc.start()
    try:
        result = await work
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
