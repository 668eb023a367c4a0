"""The per-tenant API rate limit step of the call pipeline.

Every call of a tenant principal (tenant-admin, member) takes one request from the tenant's
`api` bucket and from its method class's bucket (reads, writes, llm). Over the limit the call
is refused before the servicer runs: RESOURCE_EXHAUSTED, ErrorInfo reason TENANT_RATE_LIMITED,
RetryInfo, and `retry-after` metadata (Envoy passes it to REST clients as a header, with the
HTTP status 429). Allowed calls carry `x-ratelimit-limit/-remaining/-reset` metadata.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from services.common.errors import ResourceExhausted
from services.common.limits.counters import SharedCounters
from services.common.limits.gcra import MICROS, Bucket, Decision
from services.common.limits.model import Rate
from services.common.limits.tenant_limits import TenantLimitsCache

RATE_LIMITED = "TENANT_RATE_LIMITED"
RATE_CLASSES = ("reads", "writes", "llm")


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
        self._blocked: dict[tuple[str, str | None], tuple[float, Decision, Rate]] = {}

    def _still_blocked(self, tenant_id: str, rate_class: str | None) -> RateLimited | None:
        hit = self._blocked.get((tenant_id, rate_class))
        if hit is None:
            return None
        left = hit[0] - self._clock()
        if left <= 0:
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
        blocked = self._still_blocked(tenant_id, rate_class)
        if blocked is not None:
            raise blocked
        limits = (await self._limits.get(tenant_id)).limits
        assert limits.api is not None
        buckets = [
            Bucket(self._counters.key("rl", tenant_id, "api"), limits.api.per_second, limits.api.burst)
        ]
        rate: Rate | None = getattr(limits, rate_class) if rate_class in RATE_CLASSES else None
        if rate is not None:
            buckets.append(
                Bucket(self._counters.key("rl", tenant_id, str(rate_class)), rate.per_second, rate.burst)
            )
        decision = await self._counters.acquire(buckets)
        if not decision.allowed:
            if len(self._blocked) > 100_000:
                self._blocked.clear()
            self._blocked[(tenant_id, rate_class)] = (
                self._clock() + decision.retry_after_us / MICROS,
                decision,
                limits.api,
            )
            raise RateLimited(
                f"tenant {tenant_id} is over its request rate; retry after "
                f"{decision.retry_after_us / MICROS:.3f} s",
                decision=decision,
                limit=limits.api,
            )
        return rate_headers(limits.api, decision)
