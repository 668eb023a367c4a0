"""The bytes every object benchmark moves: one in-memory generator used by the service path and
its baseline alike, and a cheap streaming check that what came back is what went in."""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Iterator

MiB = 1024 * 1024
STAMP = 8  # each 1 MiB chunk starts with its index, big-endian


class Payload:
    """`size` bytes as 1 MiB chunks: a fixed random block whose first 8 bytes carry the chunk
    index, so chunks differ and a reordered or truncated stream is caught."""

    def __init__(self, size: int, chunk: int = MiB, seed: int = 20240) -> None:
        if chunk != MiB:
            raise ValueError("stamps sit every MiB: chunks are 1 MiB")
        self.size = size
        self.chunk = chunk
        # The stamp replaces the block's first bytes; the rest is shared by every chunk.
        self._tail = random.Random(seed).randbytes(chunk)[STAMP:]
        self._sha256: str | None = None

    @property
    def chunks_count(self) -> int:
        return -(-self.size // self.chunk)

    def chunks(self) -> Iterator[bytes]:
        for i in range(self.chunks_count):
            length = min(self.chunk, self.size - i * self.chunk)
            yield (i.to_bytes(STAMP, "big") + self._tail)[:length]

    async def achunks(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks():
            yield chunk

    @property
    def sha256(self) -> str:
        """Computed once, outside any timed section."""
        if self._sha256 is None:
            digest = hashlib.sha256()
            for chunk in self.chunks():
                digest.update(chunk)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def checker(self) -> StreamCheck:
        return StreamCheck(self)


class AsyncReader:
    """A file-like object with an async read(n) over the payload (for aioboto3.upload_fileobj)."""

    def __init__(self, payload: Payload) -> None:
        self._chunks = payload.chunks()
        self._buf = b""

    async def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            nxt = next(self._chunks, None)
            if nxt is None:
                break
            self._buf = self._buf + nxt if self._buf else nxt
        if size < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:size], self._buf[size:]
        return out


class StreamCheck:
    """Fed the downloaded pieces in order (any sizes): checks every chunk's index stamp and the
    total length, without hashing inside the timed loop."""

    def __init__(self, payload: Payload) -> None:
        self._payload = payload
        self._pos = 0
        self._next = 0  # index of the next stamp to check
        self._partial = b""

    def feed(self, data: bytes | memoryview) -> None:
        start, end = self._pos, self._pos + len(data)
        while self._next < self._payload.chunks_count:
            at = self._next * MiB + len(self._partial)
            if at >= end:
                break
            want = min(STAMP, self._payload.size - self._next * MiB)
            take = min(want - len(self._partial), end - at)
            self._partial += bytes(data[at - start : at - start + take])
            if len(self._partial) < want:
                break
            expected = self._next.to_bytes(STAMP, "big")[:want]
            if self._partial != expected:
                raise AssertionError(f"chunk {self._next} came back corrupted or out of order")
            self._next += 1
            self._partial = b""
        self._pos = end

    def finish(self) -> None:
        if self._pos != self._payload.size or self._next != self._payload.chunks_count:
            raise AssertionError(
                f"download returned {self._pos} bytes ({self._next} chunks checked), "
                f"expected {self._payload.size}"
            )
