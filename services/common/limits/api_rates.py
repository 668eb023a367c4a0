"""The per-tenant API rate limit step of the call pipeline.

Every call of a tenant principal (tenant-admin, member) takes one request from the tenant's
`api` bucket and from its method class's bucket (reads, writes, llm). Over the limit the call
is refused before the servicer runs: RESOURCE_EXHAUSTED, ErrorInfo reason TENANT_RATE_LIMITED,
RetryInfo, and `retry-after` metadata (Envoy passes it to REST clients as a header, with the
HTTP status 429). Allowed calls carry `x-ratelimit-limit/-remaining/-reset` metadata.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from services.common.errors import ResourceExhausted
from services.common.limits.counters import SharedCounters
from services.common.limits.gcra import MICROS, Bucket, Decision
from services.common.limits.model import Limits, Rate
from services.common.limits.tenant_limits import TenantLimitsCache

RATE_LIMITED = "TENANT_RATE_LIMITED"
RATE_CLASSES = ("reads", "writes", "llm")

# Leases (issue 10): a replica serving a tenant's calls fast takes a few requests ahead from the
# shared buckets, in the round trip it makes anyway, and hands them to its next calls of that
# tenant and class without asking Redis. Never more is admitted than the shared buckets allow
# (requests are taken before they are handed out). The price: requests leased here and not yet
# used are not available to the tenant's calls on other replicas. A lease is therefore small --
# what this replica used in LEASE_SECONDS at its recent pace, at most what the buckets refill in
# LEASE_SECONDS and an eighth of their burst -- and lives LEASE_SECONDS; what is left then is
# simply dropped (by its size, refilled within LEASE_SECONDS). A slow tenant or a small limit
# never gets one: exactly the per-call behaviour.
LEASE_SECONDS = 0.05
_PACE_WINDOW = 0.1  # seconds over which a replica's call rate per (tenant, class) is counted
_MIN_LEASE = 2  # smaller leases save too few round trips to be worth the inexactness


# A call waiting to be served in a group: its answer (None: ask alone) and its buckets.
_Waiter = tuple[asyncio.Future[Decision | None], list[Bucket]]
_Key = tuple[str, str | None]


@dataclass
class _Lease:
    left: int  # requests taken from the shared buckets, not handed out yet
    until: float  # monotonic time after which the rest is dropped
    decision: Decision  # the acquire that took them (remaining as of then, without them)
    limits: Limits  # the limits it was taken under: a change ends it


@dataclass
class _Pace:
    """Calls of one (tenant, class) in the current window, and the rate of the last one."""

    since: float
    calls: int = 0
    rate: float = 0.0


class RateLimited(ResourceExhausted):
    reason = RATE_LIMITED

    def __init__(self, message: str, *, decision: Decision, limit: Rate) -> None:
        retry = decision.retry_after_us / MICROS
        super().__init__(message, retry_after_seconds=round(retry, 3))
        self.headers = (
            ("retry-after", str(max(1, math.ceil(retry)))),
            *rate_headers(limit, decision),
        )


def rate_headers(limit: Rate, decision: Decision) -> tuple[tuple[str, str], ...]:
    return (
        ("x-ratelimit-limit", str(limit.burst)),
        ("x-ratelimit-remaining", str(decision.remaining)),
        ("x-ratelimit-reset", str(math.ceil(decision.reset_us / MICROS))),
    )


class ApiRateLimiter:
    def __init__(
        self, counters: SharedCounters, limits: TenantLimitsCache, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._counters = counters
        self._limits = limits
        self._clock = clock
        # (tenant, class) -> (refused until, the refusal): while a tenant is over its limit, its
        # further calls are refused here without asking Redis, so a flood costs the shared store
        # nothing. Safe: the shared bucket cannot admit a request before the retry time it gave.
        # A block ends early when the tenant's limits change (e.g. an operator raised them).
        self._blocked: dict[tuple[str, str | None], tuple[float, Decision, Rate, Limits]] = {}
        # (tenant, class) -> calls waiting while one acquire for that pair is in flight. They
        # go together in the next acquire, with cost = their number (group commit for limits):
        # at concurrency 16 a Redis round trip serves many calls instead of one each. A refused
        # group falls back to one acquire per call, so who is admitted stays exact.
        self._waiting: dict[tuple[str, str | None], list[_Waiter]] = {}
        self._groups: set[asyncio.Task[None]] = set()
        self._leases: dict[_Key, _Lease] = {}
        self._pace: dict[_Key, _Pace] = {}

    def _still_blocked(self, tenant_id: str, rate_class: str | None, limits: Limits) -> RateLimited | None:
        hit = self._blocked.get((tenant_id, rate_class))
        if hit is None:
            return None
        left = hit[0] - self._clock()
        if left <= 0 or hit[3] != limits:
            del self._blocked[(tenant_id, rate_class)]
            return None
        us = int(left * MICROS)
        decision = Decision(False, us, 0, max(us, hit[1].reset_us))
        return RateLimited(
            f"tenant {tenant_id} is over its request rate; retry after {left:.3f} s",
            decision=decision,
            limit=hit[2],
        )

    async def check(self, tenant_id: str, rate_class: str | None) -> tuple[tuple[str, str], ...]:
        """Take one request for the tenant, or raise RateLimited; the headers to send back."""
        limits = (await self._limits.get(tenant_id)).limits
        assert limits.api is not None
        key = (tenant_id, rate_class)
        now = self._clock()
        self._count_call(key, now)
        leased = self._from_lease(key, limits, now)
        if leased is not None:
            return rate_headers(limits.api, leased)
        blocked = self._still_blocked(tenant_id, rate_class, limits)
        if blocked is not None:
            raise blocked
        buckets = [
            Bucket(self._counters.key("rl", tenant_id, "api"), limits.api.per_second, limits.api.burst)
        ]
        rate: Rate | None = getattr(limits, rate_class) if rate_class in RATE_CLASSES else None
        if rate is not None:
            buckets.append(
                Bucket(self._counters.key("rl", tenant_id, str(rate_class)), rate.per_second, rate.burst)
            )
        decision = await self._acquire_grouped(key, buckets, limits)
        if not decision.allowed:
            if len(self._blocked) > 100_000:
                self._blocked.clear()
            self._blocked[(tenant_id, rate_class)] = (
                self._clock() + decision.retry_after_us / MICROS,
                decision,
                limits.api,
                limits,
            )
            raise RateLimited(
                f"tenant {tenant_id} is over its request rate; retry after "
                f"{decision.retry_after_us / MICROS:.3f} s",
                decision=decision,
                limit=limits.api,
            )
        return rate_headers(limits.api, decision)

    # -- leases ---------------------------------------------------------------------------

    def _count_call(self, key: _Key, now: float) -> None:
        pace = self._pace.get(key)
        if pace is None:
            if len(self._pace) > 100_000:
                self._pace.clear()
            self._pace[key] = _Pace(since=now, calls=1)
            return
        elapsed = now - pace.since
        if elapsed >= _PACE_WINDOW:
            # A window with no calls after this one would leave a stale rate: one window late
            # at most, and a lease is short.
            pace.rate = pace.calls / elapsed if elapsed < 2 * _PACE_WINDOW else 0.0
            pace.since, pace.calls = now, 0
        pace.calls += 1

    def _from_lease(self, key: _Key, limits: Limits, now: float) -> Decision | None:
        lease = self._leases.get(key)
        if lease is None:
            return None
        if lease.until <= now or lease.limits != limits or lease.left <= 0:
            del self._leases[key]
            return None
        lease.left -= 1
        return replace(lease.decision, remaining=lease.decision.remaining + lease.left)

    def _lease_size(self, key: _Key, buckets: list[Bucket]) -> int:
        pace = self._pace.get(key)
        if pace is None or not pace.rate:
            return 0
        size = int(pace.rate * LEASE_SECONDS)
        for b in buckets:
            size = min(size, int(b.per_second * LEASE_SECONDS), b.burst // 8)
        return size if size >= _MIN_LEASE else 0

    async def _take(self, key: _Key, buckets: list[Bucket], n: int, limits: Limits) -> Decision:
        """n requests from the shared buckets, plus a lease when this pair is busy here; a
        refused lease is not tried again for the same calls (they ask for exactly n)."""
        extra = self._lease_size(key, buckets) if key not in self._leases else 0
        if extra:
            decision = await self._counters.acquire([replace(b, cost=b.cost * (n + extra)) for b in buckets])
            if decision.allowed:
                self._leases[key] = _Lease(extra, self._clock() + LEASE_SECONDS, decision, limits)
                return replace(decision, remaining=decision.remaining + extra)
        if n == 1:
            return await self._counters.acquire(buckets)
        return await self._counters.acquire([replace(b, cost=b.cost * n) for b in buckets])

    # -- grouping ---------------------------------------------------------------------------

    async def _acquire_grouped(self, key: _Key, buckets: list[Bucket], limits: Limits) -> Decision:
        waiting = self._waiting.get(key)
        if waiting is None:
            # Nothing in flight for this pair: ask at once; calls arriving meanwhile queue.
            self._waiting[key] = []
            try:
                return await self._take(key, buckets, 1, limits)
            finally:
                self._next_group(key, limits)
        future: asyncio.Future[Decision | None] = asyncio.get_running_loop().create_future()
        waiting.append((future, buckets))
        got = await future
        if got is not None:
            return got
        # The group was refused as a whole: ask alone, so exactly the calls that fit pass.
        return await self._counters.acquire(buckets)

    def _next_group(self, key: _Key, limits: Limits) -> None:
        group = self._waiting.get(key)
        # Calls that queued while a lease was being taken are served from it first.
        while group and (leased := self._from_lease(key, limits, self._clock())) is not None:
            future, _ = group.pop(0)
            if not future.done():
                future.set_result(leased)
        if not group:
            self._waiting.pop(key, None)
            return
        self._waiting[key] = []
        task = asyncio.create_task(self._serve_group(key, group, limits))
        self._groups.add(task)
        task.add_done_callback(self._groups.discard)

    async def _serve_group(self, key: _Key, group: list[_Waiter], limits: Limits) -> None:
        """Take the group's requests in as few round trips as the limit allows: all at once;
        when that is refused, in halves, so the calls admitted are the ones a one-by-one
        order would admit. Once a single call is refused, the rest of the group is too."""
        try:
            done = 0
            size = len(group)
            while done < len(group):
                chunk = group[done : done + size]
                n = len(chunk)
                if done == 0 and n == len(group):
                    decision = await self._take(key, chunk[0][1], n, limits)  # may take a lease
                else:
                    chunk_buckets = [replace(b, cost=b.cost * n) for b in chunk[0][1]]
                    decision = await self._counters.acquire(chunk_buckets)
                if decision.allowed:
                    for i, (f, _) in enumerate(chunk):
                        # As if taken one by one: the earlier calls saw more room left.
                        if not f.done():  # a cancelled call's request was taken anyway
                            f.set_result(replace(decision, remaining=decision.remaining + (n - 1 - i)))
                    done += n
                elif n == 1:
                    for f, _ in group[done:]:
                        if not f.done():
                            f.set_result(decision)
                    return
                else:
                    size = (n + 1) // 2
        except BaseException:
            for f, _ in group:  # e.g. cancelled at shutdown: each call left asks alone
                if not f.done():
                    f.set_result(None)
            raise
        finally:
            self._next_group(key, limits)
