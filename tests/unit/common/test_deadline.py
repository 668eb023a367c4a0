"""The call deadline (services/common/deadline.py) and the retry policy living inside it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from services.common import deadline
from services.common.backoff import RetryPolicy, Transient, call_with_retries
from services.common.deadline import DeadlinePolicy
from services.common.errors import DeadlineExceeded


def test_policy_uses_the_default_without_a_client_deadline_and_caps_a_long_one() -> None:
    policy = DeadlinePolicy(default_seconds=7.0, max_seconds=60.0)
    assert policy.effective(None) == 7.0
    assert policy.effective(3600.0) == 60.0
    # A client deadline is honoured, a little inside it so the server's answer arrives first.
    assert 1.9 < policy.effective(2.0) < 2.0
    assert policy.effective(0.0) == 0.0


async def test_outside_a_call_there_is_no_deadline() -> None:
    assert deadline.remaining() is None and not deadline.expired()
    assert deadline.timeout(5.0) == 5.0
    assert await deadline.run(asyncio.sleep(0, result=3)) == 3


async def test_timeout_is_capped_by_what_the_call_has_left_and_never_zero() -> None:
    token = deadline.start(0.5)
    try:
        assert 0.4 < deadline.timeout(5.0) <= 0.5
        assert deadline.timeout(0.1) == 0.1
    finally:
        deadline.reset(token)
    token = deadline.start(-1.0)
    try:
        assert deadline.expired()
        assert deadline.timeout(5.0) == 0.001
    finally:
        deadline.reset(token)


async def test_run_cancels_the_work_at_the_deadline() -> None:
    cancelled = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    token = deadline.start(0.2)
    started = time.monotonic()
    try:
        with pytest.raises(DeadlineExceeded):
            await deadline.run(hang())
    finally:
        deadline.reset(token)
    assert time.monotonic() - started < 1.0
    assert cancelled.is_set()


async def test_run_lets_other_timeouts_through() -> None:
    async def own_timeout() -> None:
        raise TimeoutError("the SDK's own")

    token = deadline.start(5.0)
    try:
        with pytest.raises(TimeoutError, match="SDK"):
            await deadline.run(own_timeout())
    finally:
        deadline.reset(token)


async def test_stream_bounds_the_producer_not_the_consumer() -> None:
    closed = asyncio.Event()

    async def produce() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
            await asyncio.sleep(3600)
            yield 3
        finally:
            closed.set()

    got: list[int] = []
    token = deadline.start(0.3)
    try:
        with pytest.raises(DeadlineExceeded):
            async for item in deadline.stream(produce()):
                got.append(item)
    finally:
        deadline.reset(token)
    assert got == [1, 2]
    assert closed.is_set()  # the producer was closed, not left pending


async def test_tasks_started_during_a_call_see_its_deadline() -> None:
    token = deadline.start(2.0)
    try:
        seen = await asyncio.create_task(_remaining())
    finally:
        deadline.reset(token)
    assert seen is not None and 1.5 < seen <= 2.0


async def _remaining() -> float | None:
    return deadline.remaining()


class Transient503(Exception):
    pass


async def test_retries_stop_before_a_back_off_would_outlast_the_call() -> None:
    attempts = 0

    async def op() -> None:
        nonlocal attempts
        attempts += 1
        raise Transient503()

    def classify(exc: BaseException) -> Transient | None:
        # The backend asks for 1 s between tries; the call has 0.5 s.
        return Transient(throttled=True, retry_after=1.0) if isinstance(exc, Transient503) else None

    token = deadline.start(0.5)
    started = time.monotonic()
    try:
        with pytest.raises(Transient503):  # the real failure, at once, not DEADLINE_EXCEEDED later
            await call_with_retries(op, classify, RetryPolicy(max_attempts=4))
    finally:
        deadline.reset(token)
    assert attempts == 1
    assert time.monotonic() - started < 0.3


async def test_retries_within_the_deadline_still_happen() -> None:
    attempts = 0

    async def op() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise Transient503()
        return "ok"

    def classify(exc: BaseException) -> Transient | None:
        return Transient(throttled=False) if isinstance(exc, Transient503) else None

    token = deadline.start(10.0)
    try:
        policy = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02)
        assert await call_with_retries(op, classify, policy) == "ok"
    finally:
        deadline.reset(token)
    assert attempts == 3


def test_settings_override_one_service_and_keep_the_others() -> None:
    policy = deadline.policy_for("storage", {"storage": 12.0}, {})
    assert policy == DeadlinePolicy(default_seconds=12.0, max_seconds=deadline.MAX_SECONDS["storage"])
    llm = deadline.policy_for("llm", {"storage": 12.0}, {})
    assert llm.default_seconds == deadline.DEFAULT_SECONDS["llm"]
    # A default above the cap is the cap.
    assert deadline.policy_for("tenant", {"tenant": 100.0}, {"tenant": 5.0}).default_seconds == 5.0


async def test_a_slow_consumer_does_not_resume_the_producer_past_the_deadline() -> None:
    resumed = False

    async def produce() -> AsyncIterator[int]:
        nonlocal resumed
        yield 1
        resumed = True  # would be blamed on the backend if the timeout fired in here
        yield 2

    token = deadline.start(0.1)
    try:
        got: list[int] = []
        with pytest.raises(DeadlineExceeded):
            async for item in deadline.stream(produce()):
                got.append(item)
                await asyncio.sleep(0.2)  # the client reads slowly
    finally:
        deadline.reset(token)
    assert got == [1] and not resumed


def test_a_stream_without_a_client_deadline_gets_the_cap() -> None:
    policy = DeadlinePolicy(default_seconds=7.0, max_seconds=60.0)
    assert policy.effective(None, streaming=True) == 60.0
    assert 1.9 < policy.effective(2.0, streaming=True) < 2.0


async def test_room_for_an_sdk_retry() -> None:
    assert deadline.room_for_retry()  # outside a call
    token = deadline.start(5.0)
    try:
        assert deadline.room_for_retry()
    finally:
        deadline.reset(token)
    token = deadline.start(1.0)
    try:
        assert not deadline.room_for_retry()
    finally:
        deadline.reset(token)
