"""LlmLimits' round-trip cuts on the machine's Redis (a private key prefix per test): far from the
budget a replica keeps charges in memory and sends them together (within FLUSH_SECONDS, before
raising floors, on close); near it every charge goes out at once; a call's tpm settlement is
taken by the tenant's next reservation, and a refused reservation still owes it exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from services.common.errors import ResourceExhausted
from services.common.limits.counters import SharedCounters
from services.common.limits.keys import budget_keys
from services.common.limits.model import Limits
from services.common.limits.tenant_limits import TenantLimitsCache
from services.common.usage import LLM_BUDGET_ALERTS
from services.llm import limits as llm_limits
from services.llm.limits import BudgetExceeded, LlmLimits
from tests.limits_support import FixedLimits
from tests.unit.llm.support import MemoryRecorder

pytestmark = pytest.mark.timeout(30)

MACHINE_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def counters() -> AsyncIterator[SharedCounters]:
    store = SharedCounters(MACHINE_REDIS, prefix=f"makoto-test-{uuid.uuid4().hex[:10]}:")
    yield store
    await store.close()


def _limits(counters: SharedCounters, fixed: FixedLimits) -> LlmLimits:
    # A long TTL: the same EffectiveLimits for the whole test (no floor raising in between).
    return LlmLimits(counters, TenantLimitsCache(fixed, ttl_seconds=60.0), None)


async def _shared_tokens(counters: SharedCounters, limits: LlmLimits, tenant: str) -> int:
    eff = await limits._limits.get(tenant)
    return (await counters.get(budget_keys(counters, tenant, eff.month)))[0]


async def test_far_from_the_budget_charges_are_sent_together(
    counters: SharedCounters, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llm_limits, "FLUSH_SECONDS", 0.3)
    fixed = FixedLimits(table={"t": Limits(llm_monthly_tokens=1_000_000)})
    limits = _limits(counters, fixed)
    first = await limits.reserve("t", 10, rpm=0, tpm=0)
    # The first charge learns the shared totals: it goes out at once.
    assert await _shared_tokens(counters, limits, "t") == 10
    await limits.settle("t", first, 10, 5)
    for _ in range(5):
        charge = await limits.reserve("t", 10, rpm=0, tpm=0)
        await limits.settle("t", charge, 10, 5)
    # Kept here for now (far below 1/16 of the room), then sent by the flusher.
    assert await _shared_tokens(counters, limits, "t") == 10
    await asyncio.sleep(0.8)
    assert await _shared_tokens(counters, limits, "t") == 6 * 15
    await limits.close()


async def test_close_sends_what_is_kept(counters: SharedCounters) -> None:
    limits = _limits(counters, FixedLimits())
    for _ in range(3):
        charge = await limits.reserve("c", 7, rpm=0, tpm=0)
        await limits.settle("c", charge, 7, 3)
    await limits.close()
    assert await _shared_tokens(counters, limits, "c") == 30


async def test_near_the_budget_every_charge_goes_out_and_the_budget_holds(counters: SharedCounters) -> None:
    fixed = FixedLimits(table={"n": Limits(llm_monthly_tokens=100)})
    limits = _limits(counters, fixed)
    total = 0
    with pytest.raises(BudgetExceeded):
        for _ in range(20):
            charge = await limits.reserve("n", 10, rpm=0, tpm=0)
            await limits.settle("n", charge, 10, 10)
            total += 20
            # 1/16 of the room is less than a call: nothing waits here.
            assert await _shared_tokens(counters, limits, "n") == total
    # Refused once the next prompt would cross 100; the refused call is not charged.
    assert total == 100
    assert await _shared_tokens(counters, limits, "n") == 100
    await limits.close()


async def test_a_second_replica_sees_the_budget_spent_by_the_first(counters: SharedCounters) -> None:
    fixed = FixedLimits(table={"r": Limits(llm_monthly_tokens=1000)})
    a, b = _limits(counters, fixed), _limits(counters, fixed)
    for _ in range(9):
        charge = await a.reserve("r", 50, rpm=0, tpm=0)
        await a.settle("r", charge, 50, 50)
    # 900 spent on a: at most 1/16 of the room it last saw may be unsent, so b cannot
    # spend 200 more.
    with pytest.raises(BudgetExceeded):
        await b.reserve("r", 200, rpm=0, tpm=0)
    await a.close()
    await b.close()


async def test_tpm_settlement_rides_on_the_next_reservation(counters: SharedCounters) -> None:
    limits = _limits(counters, FixedLimits())
    # 600 tokens per minute, burst 600: 10 reserved, 590 used.
    charge = await limits.reserve("p", 10, rpm=0, tpm=600)
    await limits.settle("p", charge, 10, 580)
    # Owed 580: 100 more does not fit (refused), and the debt is still taken exactly once.
    with pytest.raises(ResourceExhausted) as caught:
        await limits.reserve("p", 100, rpm=0, tpm=600)
    assert caught.value.reason == "LLM_RATE_LIMITED"
    small = await limits.reserve("p", 5, rpm=0, tpm=600)  # 595 of 600
    await limits.settle("p", small, 5, 0)
    with pytest.raises(ResourceExhausted):
        await limits.reserve("p", 30, rpm=0, tpm=600)  # 625 of 600: the debt was counted
    await limits.close()


async def test_each_threshold_alerts_once_across_replicas_whatever_flush_crosses_it(
    counters: SharedCounters,
) -> None:
    fixed = FixedLimits(table={"al": Limits(llm_monthly_tokens=10_000)})
    recorder = MemoryRecorder()
    a = LlmLimits(counters, TenantLimitsCache(fixed, ttl_seconds=60.0), recorder)
    b = LlmLimits(counters, TenantLimitsCache(fixed, ttl_seconds=60.0), recorder)
    # Small calls on two replicas, so crossings happen inside flushes of several kept charges
    # and of the other replica's charges, up to 90 % of the budget.
    spent = 0
    while spent < 9_000:
        for limits in (a, b):
            charge = await limits.reserve("al", 3, rpm=0, tpm=0)
            await limits.settle("al", charge, 3, 4)
            spent += 7
    await a.close()
    await b.close()
    assert await _shared_tokens(counters, a, "al") == spent
    crossed = [
        (e.dimensions["budget"], e.dimensions["threshold"])
        for e in recorder.events
        if e.meter == LLM_BUDGET_ALERTS
    ]
    assert crossed == [("tokens", "80")]
