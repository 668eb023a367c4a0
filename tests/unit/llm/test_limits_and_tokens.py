"""The offline tokenizer."""

from __future__ import annotations

from services.llm.ports import Message
from services.llm.tokens import count_chat_tokens, count_tokens, split_pieces, truncate


def test_count_and_split() -> None:
    text = "Hello, world!  How are you?\n"
    assert count_tokens(text) == 8
    pieces = split_pieces(text)
    assert "".join(pieces) == text and len(pieces) == 8
    assert split_pieces("") == [] and split_pieces("   ") == ["   "]
    assert truncate("one two three", 2) == ("one two", True)
    assert truncate("one two", 2) == ("one two", False)


def test_chat_framing() -> None:
    msgs = [Message("system", "Be brief."), Message("user", "Hi", name="kenji")]
    # 3 priming + (3 + 3) + (3 + 1 + 1 name)
    assert count_chat_tokens(msgs) == 14
