"""Deterministic content: chat answers, embedding vectors, PNG images."""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import zlib
from collections.abc import Sequence

NO_USER_MESSAGE_ANSWER = "Hello from the MAKOTO LLM simulator."


def chat_answer(messages: Sequence[tuple[str, str]]) -> str:
    """ "Echo: <last user message>", so a test can predict every answer."""
    for role, content in reversed(messages):
        if role == "user":
            return f"Echo: {content}"
    return NO_USER_MESSAGE_ANSWER


def embedding(model: str, text: str, dims: int) -> list[float]:
    """A unit vector seeded by sha256(model, text): equal inputs give equal vectors."""
    raw = b""
    block = 0
    while len(raw) < dims * 2:
        raw += hashlib.sha256(f"{model}\0{block}\0{text}".encode()).digest()
        block += 1
    values = [(v - 32767.5) / 32767.5 for v in struct.unpack(f"<{dims}H", raw[: dims * 2])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def normalize(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def encode_base64_floats(vector: Sequence[float]) -> str:
    """OpenAI's encoding_format=base64: little-endian float32 array."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(seed: str, width: int, height: int) -> bytes:
    """A solid-colour RGB PNG whose colour comes from sha256(seed)."""
    r, g, b = hashlib.sha256(seed.encode()).digest()[:3]
    row = b"\x00" + bytes((r, g, b)) * width  # filter byte 0 + pixels
    raw = row * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )
