"""Shared counters for limits: Redis when it answers, this replica's memory when it does not.

Redis (one per deployment, shared by every replica of every service) holds the GCRA buckets
and the monthly budget counters, so N replicas enforce one limit. When Redis is unreachable
the limits do not vanish: each replica enforces them on its own (the same GCRA in memory, and
budget counters continuing from the last known values), logs a warning at most every 30 s and
counts the fallback in `makoto_limits_fallback_total`. While degraded a tenant can get up to N
times its rate across N replicas; it is never unlimited. Redis is retried after a short pause.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis.asyncio as aioredis
import structlog
from prometheus_client import Counter, Gauge
from redis.exceptions import RedisError

from services.common.limits.gcra import ACQUIRE_LUA, ADJUST_LUA, Bucket, Decision, LocalGcra

log = structlog.get_logger("makoto.limits")

FALLBACKS = Counter(
    "makoto_limits_fallback_total",
    "Limit operations answered from this replica's memory because Redis was unreachable",
    ["op"],
)
REDIS_UP = Gauge("makoto_limits_redis_up", "1 while the limits' Redis answers, 0 while degraded")

# KEYS: counters; ARGV: amounts (same order), ttl seconds. Returns the new values.
_ADD_LUA = """
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('INCRBY', KEYS[i], ARGV[i])
  redis.call('EXPIRE', KEYS[i], ARGV[#KEYS + 1])
end
return out
"""

# KEYS[1]: counter; ARGV: floor, ttl. Raises the counter to at least floor (never lowers it).
_FLOOR_LUA = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return tonumber(ARGV[1])
end
return cur
"""


class SharedCounters:
    def __init__(
        self,
        url: str | None,
        *,
        prefix: str = "makoto:",
        op_timeout_seconds: float = 0.25,
        pause_seconds: float = 2.0,
    ) -> None:
        self.prefix = prefix
        self._redis: aioredis.Redis | None = None
        if url:
            self._redis = aioredis.Redis.from_url(
                url,
                socket_timeout=op_timeout_seconds,
                socket_connect_timeout=op_timeout_seconds,
                retry_on_timeout=False,
                health_check_interval=0,
            )
            self._acquire = self._redis.register_script(ACQUIRE_LUA)
            self._adjust = self._redis.register_script(ADJUST_LUA)
            self._add = self._redis.register_script(_ADD_LUA)
            self._floor = self._redis.register_script(_FLOOR_LUA)
        self._pause = pause_seconds
        self._down_until = 0.0
        self._last_warning = 0.0
        self._local = LocalGcra()
        self._local_counts: dict[str, int] = {}
        REDIS_UP.set(1 if url else 0)

    # -- state ---------------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        return self._redis is None or time.monotonic() < self._down_until

    def _usable(self) -> aioredis.Redis | None:
        if self._redis is None or time.monotonic() < self._down_until:
            return None
        return self._redis

    def _failed(self, op: str, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + self._pause
        REDIS_UP.set(0)
        if now - self._last_warning >= 30.0:
            self._last_warning = now
            log.warning(
                "limits store unreachable: enforcing limits per replica",
                op=op,
                error=type(exc).__name__,
                retry_in_seconds=self._pause,
            )

    def _fallback(self, op: str) -> None:
        FALLBACKS.labels(op=op).inc()

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # -- rate buckets ----------------------------------------------------------------------------

    async def acquire(self, buckets: Sequence[Bucket]) -> Decision:
        """Take each bucket's cost, all or nothing."""
        client = self._usable()
        if client is not None:
            args: list[float | int] = []
            for b in buckets:
                args += [b.interval_us, b.burst, b.cost]
            try:
                allowed, retry, remaining, reset = await self._acquire(
                    keys=[b.key for b in buckets], args=args, client=client
                )
                REDIS_UP.set(1)
                return Decision(bool(allowed), int(retry), int(remaining), int(reset))
            except (RedisError, OSError) as exc:
                self._failed("acquire", exc)
        self._fallback("acquire")
        return self._local.acquire(list(buckets))

    async def adjust(self, bucket: Bucket, delta: float) -> None:
        """Move a bucket by delta units (negative gives back), e.g. to settle a reservation."""
        if delta == 0:
            return
        client = self._usable()
        if client is not None:
            try:
                await self._adjust(keys=[bucket.key], args=[bucket.interval_us, delta], client=client)
                return
            except (RedisError, OSError) as exc:
                self._failed("adjust", exc)
        self._fallback("adjust")
        self._local.adjust(bucket, delta)

    # -- counters (budgets, stored bytes) ----------------------------------------------------------

    async def add(self, keys: Sequence[str], amounts: Sequence[int], ttl_seconds: int) -> list[int]:
        """Add to each counter; the new values."""
        client = self._usable()
        if client is not None:
            try:
                values = [
                    int(v)
                    for v in await self._add(keys=list(keys), args=[*amounts, ttl_seconds], client=client)
                ]
                # Remembered, so a fallback continues from the last known totals, not from zero.
                self._local_counts.update(zip(keys, values, strict=True))
                return values
            except (RedisError, OSError) as exc:
                self._failed("add", exc)
        self._fallback("add")
        out = []
        for k, a in zip(keys, amounts, strict=True):
            self._local_counts[k] = self._local_counts.get(k, 0) + a
            out.append(self._local_counts[k])
        return out

    async def raise_to(self, key: str, floor: int, ttl_seconds: int) -> int:
        """Raise a counter to at least floor (e.g. MeteringService's durable total)."""
        client = self._usable()
        if client is not None:
            try:
                value = int(await self._floor(keys=[key], args=[floor, ttl_seconds], client=client))
                self._local_counts[key] = value
                return value
            except (RedisError, OSError) as exc:
                self._failed("raise_to", exc)
        self._fallback("raise_to")
        value = max(self._local_counts.get(key, 0), floor)
        self._local_counts[key] = value
        return value

    async def get(self, keys: Sequence[str]) -> list[int]:
        client = self._usable()
        if client is not None:
            try:
                got = [int(v) if v is not None else 0 for v in await client.mget(list(keys))]
                self._local_counts.update(zip(keys, got, strict=True))
                return got
            except (RedisError, OSError) as exc:
                self._failed("get", exc)
        self._fallback("get")
        return [self._local_counts.get(k, 0) for k in keys]

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
