"""Circuit breaker states (services/common/breaker.py) on a hand-driven clock."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2

from services.common import deadline
from services.common.breaker import BreakerOpen, BreakerState, CircuitBreakers
from services.common.errors import DeadlineExceeded, NotFound, ResourceExhausted, Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breakers(clock: Clock) -> CircuitBreakers:
    return CircuitBreakers(failure_threshold=3, cooldown_seconds=10.0, clock=clock)


async def _fail(b: CircuitBreakers, key: str, exc: BaseException) -> None:
    with pytest.raises(type(exc)):
        async with b.guard(key, "test backend"):
            raise exc


async def _ok(b: CircuitBreakers, key: str) -> None:
    async with b.guard(key, "test backend"):
        pass


async def test_opens_after_consecutive_failures_and_fails_fast_with_retry_info(
    breakers: CircuitBreakers, clock: Clock
) -> None:
    for exc in (Unavailable("down"), DeadlineExceeded("slow")):
        await _fail(breakers, "a", exc)
    assert breakers.state("a") is BreakerState.CLOSED
    await _fail(breakers, "a", TimeoutError())
    assert breakers.state("a") is BreakerState.OPEN

    clock.now += 4.0
    entered = False
    with pytest.raises(BreakerOpen) as refused:
        async with breakers.guard("a", "test backend"):
            entered = True
    assert not entered  # the backend is not touched while open
    err = refused.value
    assert err.code is grpc.StatusCode.UNAVAILABLE and err.reason == "BACKEND_CIRCUIT_OPEN"
    infos = [d for d in err.details() if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    info = error_details_pb2.RetryInfo()
    infos[0].Unpack(info)
    assert info.retry_delay.ToNanoseconds() / 1e9 == pytest.approx(6.0)
    # Other keys (other tenants, other endpoints) are untouched.
    await _ok(breakers, "b")


async def test_a_success_in_between_resets_the_count(breakers: CircuitBreakers) -> None:
    await _fail(breakers, "a", Unavailable("down"))
    await _fail(breakers, "a", Unavailable("down"))
    await _ok(breakers, "a")
    await _fail(breakers, "a", Unavailable("down"))
    await _fail(breakers, "a", Unavailable("down"))
    assert breakers.state("a") is BreakerState.CLOSED


async def test_answers_from_a_live_backend_count_as_success(breakers: CircuitBreakers) -> None:
    for _ in range(2):
        await _fail(breakers, "a", Unavailable("down"))
    await _fail(breakers, "a", NotFound("no such item"))  # the backend answered
    await _fail(breakers, "a", ResourceExhausted("throttled"))  # alive, just busy
    for _ in range(2):
        await _fail(breakers, "a", Unavailable("down"))
    assert breakers.state("a") is BreakerState.CLOSED


async def test_half_open_lets_one_probe_through_and_closes_on_success(
    breakers: CircuitBreakers, clock: Clock
) -> None:
    for _ in range(3):
        await _fail(breakers, "a", Unavailable("down"))
    clock.now += 10.0
    assert breakers.state("a") is BreakerState.HALF_OPEN
    probe_inside = asyncio.Event()
    release = asyncio.Event()

    async def probe() -> None:
        async with breakers.guard("a", "test backend"):
            probe_inside.set()
            await release.wait()

    task = asyncio.create_task(probe())
    await probe_inside.wait()
    with pytest.raises(BreakerOpen):  # only one probe at a time
        await _ok(breakers, "a")
    release.set()
    await task
    assert breakers.state("a") is BreakerState.CLOSED
    await _ok(breakers, "a")


async def test_a_failed_probe_opens_it_for_another_cool_down(breakers: CircuitBreakers, clock: Clock) -> None:
    for _ in range(3):
        await _fail(breakers, "a", Unavailable("down"))
    clock.now += 10.0
    await _fail(breakers, "a", Unavailable("still down"))
    assert breakers.state("a") is BreakerState.OPEN
    clock.now += 9.0
    assert breakers.state("a") is BreakerState.OPEN
    clock.now += 1.0
    assert breakers.state("a") is BreakerState.HALF_OPEN


async def test_a_client_that_gives_up_early_says_nothing_about_the_backend(
    breakers: CircuitBreakers, clock: Clock
) -> None:
    token = deadline.start(30.0)
    try:
        for _ in range(5):
            await _fail(breakers, "a", asyncio.CancelledError())
    finally:
        deadline.reset(token)
    assert breakers.state("a") is BreakerState.CLOSED
    # ... but a cancellation at the call's deadline is a timeout.
    token = deadline.start(0.0)
    try:
        for _ in range(3):
            await _fail(breakers, "a", asyncio.CancelledError())
    finally:
        deadline.reset(token)
    assert breakers.state("a") is BreakerState.OPEN


async def test_a_cancelled_probe_hands_the_probe_to_the_next_caller(
    breakers: CircuitBreakers, clock: Clock
) -> None:
    for _ in range(3):
        await _fail(breakers, "a", Unavailable("down"))
    clock.now += 10.0
    await _fail(breakers, "a", asyncio.CancelledError())  # outside any call: no verdict
    await _ok(breakers, "a")  # admitted as the next probe, and it closes the breaker
    assert breakers.state("a") is BreakerState.CLOSED


async def test_only_failing_keys_are_kept_and_their_number_is_bounded(clock: Clock) -> None:
    b = CircuitBreakers(failure_threshold=3, cooldown_seconds=10.0, max_keys=10, clock=clock)
    for i in range(100):
        await _fail(b, f"k{i}", Unavailable("down"))
        await _ok(b, f"ok{i}")
    assert len(b._circuits) == 10


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        CircuitBreakers(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreakers(cooldown_seconds=0)
