"""The benchmark's own correctness checks (no timing): the stream check must accept the payload
in any piece sizes and refuse a reordered or truncated stream, so a fast wrong transfer can
never produce a number."""

from __future__ import annotations

import hashlib
import random

import pytest

from tests.bench.payload import AsyncReader, MiB, Payload

SIZE = 3 * MiB + 12345  # a short last chunk, shorter than a stamp boundary crossing


def _pieces(data: bytes, rng: random.Random) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        step = rng.choice([1, 3, 7, 8, 9, 4096, 256 * 1024, MiB - 5, MiB + 3])
        out.append(data[pos : pos + step])
        pos += step
    return out


def test_check_accepts_the_payload_in_any_piece_sizes() -> None:
    payload = Payload(SIZE)
    data = b"".join(payload.chunks())
    assert len(data) == SIZE
    assert hashlib.sha256(data).hexdigest() == payload.sha256
    for seed in range(5):
        check = payload.checker()
        for piece in _pieces(data, random.Random(seed)):
            check.feed(piece)
        check.finish()


def test_check_refuses_swapped_chunks() -> None:
    payload = Payload(SIZE)
    chunks = list(payload.chunks())
    chunks[1], chunks[2] = chunks[2], chunks[1]
    check = payload.checker()
    with pytest.raises(AssertionError, match="chunk 1"):
        for chunk in chunks:
            check.feed(chunk)


def test_check_refuses_a_truncated_stream() -> None:
    payload = Payload(SIZE)
    check = payload.checker()
    for chunk in list(payload.chunks())[:-1]:
        check.feed(chunk)
    with pytest.raises(AssertionError, match="expected"):
        check.finish()


async def test_async_reader_returns_exactly_the_payload() -> None:
    payload = Payload(SIZE)
    reader = AsyncReader(payload)
    parts = []
    while part := await reader.read(700_000):
        parts.append(part)
    assert [len(p) for p in parts[:-1]] == [700_000] * (len(parts) - 1)
    assert hashlib.sha256(b"".join(parts)).hexdigest() == payload.sha256
