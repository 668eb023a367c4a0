"""The offline tokenizer and the token buckets."""

from __future__ import annotations

import pytest

from services.common.errors import ResourceExhausted
from services.llm.ports import Message
from services.llm.ratelimit import TenantLimiter, TokenBucket
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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_continuously() -> None:
    clock = Clock()
    bucket = TokenBucket(60, clock)  # one per second
    bucket.take(60)
    assert bucket.wait_for(1) == pytest.approx(1.0)
    clock.now += 0.5
    assert bucket.wait_for(1) == pytest.approx(0.5)
    clock.now += 100
    assert bucket.wait_for(60) == 0.0  # capped at the burst size
    assert bucket.wait_for(61) > 0


def test_limiter_rpm_tpm_and_settle() -> None:
    clock = Clock()
    limiter = TenantLimiter(rpm=2, tpm=100, clock=clock)
    limiter.acquire(10)
    limiter.acquire(10)
    with pytest.raises(ResourceExhausted) as caught:
        limiter.acquire(10)
    assert caught.value.retry_after_seconds == pytest.approx(30.0)  # 2 per minute
    clock.now += 30
    limiter.acquire(10)
    limiter.settle(reserved=10, actual=90)  # the provider reported far more than the estimate
    clock.now += 30
    with pytest.raises(ResourceExhausted) as caught:
        limiter.acquire(61)  # 100 - 10 - 80 (settled) + 50 (refilled) = 60 left
    assert "tokens per minute" in caught.value.message
    with pytest.raises(ResourceExhausted) as too_big:
        limiter.acquire(101)
    assert too_big.value.retry_after_seconds is None


def test_zero_means_unlimited() -> None:
    limiter = TenantLimiter(rpm=0, tpm=0)
    for _ in range(1000):
        limiter.acquire(10_000)
