"""The shared limit store: GCRA semantics on the machine's Redis and in the per-replica fallback
(one behaviour), two replicas holding one limit, and what happens when Redis goes away."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from services.common.limits.counters import FALLBACKS, SharedCounters
from services.common.limits.gcra import Bucket
from tests.redis_support import PrivateRedis

MACHINE_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["redis", "local"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[SharedCounters]:
    url = MACHINE_REDIS if request.param == "redis" else None
    store = SharedCounters(url, prefix=f"makoto-test-{uuid.uuid4().hex[:10]}:")
    yield store
    await store.close()


async def test_burst_then_the_sustained_rate(counters: SharedCounters) -> None:
    bucket = Bucket(counters.key("rl", "t", "api"), per_second=2.0, burst=5)
    decisions = [await counters.acquire([bucket]) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert decisions[0].remaining == 4 and decisions[4].remaining == 0
    refused = decisions[5]
    # One request every 0.5 s: the next one is allowed within half a second.
    assert 0 < refused.retry_after_us <= 500_000


async def test_buckets_are_taken_all_or_nothing(counters: SharedCounters) -> None:
    api = Bucket(counters.key("rl", "t", "api"), per_second=1.0, burst=10)
    writes = Bucket(counters.key("rl", "t", "writes"), per_second=1.0, burst=2)
    assert (await counters.acquire([api, writes])).allowed
    assert (await counters.acquire([api, writes])).allowed
    refused = await counters.acquire([api, writes])
    assert not refused.allowed
    # The refused call took nothing from the api bucket: 8 remain there.
    assert (await counters.acquire([api])).remaining == 7


async def test_reservations_settle(counters: SharedCounters) -> None:
    tpm = Bucket(counters.key("llm", "t", "tpm"), per_second=100 / 60, burst=100, cost=60)
    assert (await counters.acquire([tpm])).allowed
    assert not (await counters.acquire([tpm])).allowed  # 40 left, 60 asked
    await counters.adjust(tpm, -50)  # the provider used 10, not 60
    assert (await counters.acquire([tpm])).allowed


async def test_counters_add_and_never_fall_below_a_floor(counters: SharedCounters) -> None:
    key = counters.key("budget", "t", "2026-12", "tokens")
    assert await counters.add([key], [10], 60) == [10]
    assert await counters.raise_to(key, 50, 60) == 50
    assert await counters.raise_to(key, 20, 60) == 50  # never lowered
    assert await counters.add([key], [5], 60) == [55]
    assert await counters.get([key, counters.key("nothing")]) == [55, 0]


async def test_two_replicas_share_one_limit() -> None:
    prefix = f"makoto-test-{uuid.uuid4().hex[:10]}:"
    a, b = SharedCounters(MACHINE_REDIS, prefix=prefix), SharedCounters(MACHINE_REDIS, prefix=prefix)
    try:
        bucket = Bucket(a.key("rl", "t", "api"), per_second=0.5, burst=10)
        allowed = 0
        for i in range(40):
            d = await (a if i % 2 else b).acquire([bucket])
            allowed += d.allowed
        # One burst for both, not one each (the window is far shorter than 2 s, so at most
        # one extra request can have refilled).
        assert 10 <= allowed <= 11
    finally:
        await a.close()
        await b.close()


async def test_redis_down_falls_back_to_per_replica_limits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = PrivateRedis(tmp_path / "redis").start()
    store = SharedCounters(redis.url, prefix="t:", pause_seconds=0.2)
    try:
        bucket = Bucket(store.key("rl", "t", "api"), per_second=1.0, burst=3)
        assert (await store.acquire([bucket])).allowed
        assert not store.degraded
        redis.stop()
        before = FALLBACKS.labels(op="acquire")._value.get()
        with structlog.testing.capture_logs() as logs:
            results = [(await store.acquire([bucket])).allowed for _ in range(6)]
        # Still limited: this replica's own bucket gives the burst, then refuses. Never unlimited.
        assert results == [True, True, True, False, False, False]
        assert store.degraded
        # One warning (not one per call), and the fallback counted per operation.
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert len(warnings) == 1 and "per replica" in warnings[0]["event"]
        assert FALLBACKS.labels(op="acquire")._value.get() - before == 6
        key = store.key("budget", "t", "m", "tokens")
        assert await store.add([key], [7], 60) == [7]  # budget counters keep counting locally
        # Redis back: the shared store is used again after the pause.
        redis = PrivateRedis(tmp_path / "redis", port=redis.port).start()
        await asyncio.sleep(0.3)
        assert (await store.acquire([Bucket(store.key("rl", "u", "api"), 1.0, 3)])).allowed
        assert not store.degraded
    finally:
        await store.close()
        redis.stop()


async def test_a_tenant_over_its_limit_is_refused_without_asking_redis(tmp_path: Path) -> None:
    from makoto.metering.v1 import metering_pb2

    from services.common.limits.api_rates import ApiRateLimiter, RateLimited
    from services.common.limits.model import DEFAULTS, Limits, Rate
    from services.common.limits.tenant_limits import TenantLimitsCache

    async def fetch(tenant_id: str) -> metering_pb2.TenantLimits:
        return metering_pb2.TenantLimits(
            tenant_id=tenant_id, effective=Limits(api=Rate(0.5, 2)).over(DEFAULTS).to_proto()
        )

    redis = PrivateRedis(tmp_path / "redis").start()
    store = SharedCounters(redis.url, prefix="t:")
    limiter = ApiRateLimiter(store, TenantLimitsCache(fetch, ttl_seconds=60))
    try:
        await limiter.check("noisy", "reads")
        await limiter.check("noisy", "reads")
        with pytest.raises(RateLimited) as first:
            await limiter.check("noisy", "reads")
        assert 0 < first.value.retry_after_seconds <= 2.0  # type: ignore[operator]
        redis.stop()  # from now on any Redis call would fail over to the fallback (and count)
        before = FALLBACKS.labels(op="acquire")._value.get()
        for _ in range(50):
            with pytest.raises(RateLimited) as again:
                await limiter.check("noisy", "reads")
            assert dict(again.value.headers)["retry-after"] in ("1", "2")
        assert FALLBACKS.labels(op="acquire")._value.get() == before  # no store call at all
        assert not store.degraded
    finally:
        await store.close()
        redis.stop()


class _CountingCounters(SharedCounters):
    """The real store, counting the acquire round trips it makes."""

    acquires = 0

    async def acquire(self, buckets):  # type: ignore[no-untyped-def]
        self.acquires += 1
        return await super().acquire(buckets)


@pytest.mark.parametrize("url", [MACHINE_REDIS, None], ids=["redis", "local"])
async def test_concurrent_calls_share_round_trips_and_exactly_the_burst_passes(url: str | None) -> None:
    from makoto.metering.v1 import metering_pb2

    from services.common.limits.api_rates import ApiRateLimiter, RateLimited
    from services.common.limits.model import DEFAULTS, Limits, Rate
    from services.common.limits.tenant_limits import TenantLimitsCache

    async def fetch(tenant_id: str) -> metering_pb2.TenantLimits:
        # 25 at once, refilling far too slowly to matter during the test.
        return metering_pb2.TenantLimits(
            tenant_id=tenant_id, effective=Limits(api=Rate(0.01, 25)).over(DEFAULTS).to_proto()
        )

    store = _CountingCounters(url, prefix=f"makoto-test-{uuid.uuid4().hex[:10]}:")
    limiter = ApiRateLimiter(store, TenantLimitsCache(fetch, ttl_seconds=60))
    try:
        results = await asyncio.gather(
            *(limiter.check("crowd", "reads") for _ in range(40)), return_exceptions=True
        )
        admitted = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, RateLimited)]
        # Grouping changes how often the store is asked, never who passes: exactly the burst.
        assert len(admitted) == 25 and len(refused) == 15
        remaining = sorted(int(dict(h)["x-ratelimit-remaining"]) for h in admitted)
        assert remaining == list(range(25))  # as if taken one by one
        # 40 calls at once: one round trip for the first, then the group that queued behind it
        # in halving chunks once it no longer fits (each refused chunk is one round trip). The
        # local fallback answers without waiting, so nothing queues there.
        assert store.acquires <= (15 if url else 40)
    finally:
        await store.close()
