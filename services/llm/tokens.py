"""An offline token estimate (no tiktoken: it downloads its encodings at run time).

Words and single punctuation marks count as one token each, plus the per-message framing
OpenAI documents for chat prompts. The simulator reports usage with the same functions, so
against it the estimate is exact; against a real provider it is an estimate, and metering
bills the provider's reported usage.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

_TOKEN = re.compile(r"\w+|[^\w\s]")
# One piece = one token with the whitespace before it, so pieces concatenate to the text.
_PIECE = re.compile(r"\s*(?:\w+|[^\w\s])")

# Framing cost per message and for priming the reply (OpenAI's cookbook counting scheme).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3


class HasContent(Protocol):
    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str: ...

    @property
    def name(self) -> str: ...


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


def count_chat_tokens(messages: Iterable[HasContent]) -> int:
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE + count_tokens(message.content)
        if message.name:
            total += TOKENS_PER_NAME
    return total


def split_pieces(text: str) -> list[str]:
    """Split into one piece per token; "".join(pieces) == text."""
    pieces = [m.group(0) for m in _PIECE.finditer(text)]
    consumed = sum(len(p) for p in pieces)
    tail = text[consumed:]  # trailing whitespace
    if tail:
        if pieces:
            pieces[-1] += tail
        else:
            pieces = [tail]
    return pieces


def truncate(text: str, max_tokens: int) -> tuple[str, bool]:
    """The first max_tokens tokens of text, and whether anything was cut."""
    pieces = split_pieces(text)
    if count_tokens(text) <= max_tokens:
        return text, False
    return "".join(pieces[:max_tokens]), True
