"""GCRA (generic cell rate algorithm) — the rate limiter behind every per-tenant limit.

A bucket is a key holding its "theoretical arrival time" (TAT) in microseconds. With emission
interval T = 1 / rate and capacity `burst`, a request of cost n is allowed when
max(TAT, now) + n*T - burst*T <= now; then TAT advances by n*T. One number per bucket, exact
under concurrency when the check-and-set is atomic: in Redis that is one Lua script (below), in
the per-replica fallback one event loop step (LocalGcra).

Several buckets (e.g. the tenant's overall API rate and its reads rate) are checked together:
either all take the cost or none does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

MICROS = 1_000_000


@dataclass(frozen=True)
class Bucket:
    key: str
    per_second: float
    burst: int
    cost: float = 1.0

    @property
    def interval_us(self) -> float:
        return MICROS / self.per_second


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # Microseconds until the request could succeed (0 when allowed).
    retry_after_us: int
    # Of the first bucket: whole requests still allowed now, and microseconds until it is full.
    remaining: int
    reset_us: int


# KEYS: bucket keys. ARGV: interval_us, burst, cost for each key, in order.
# Returns {allowed, retry_after_us, remaining, reset_us} (integers).
ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local retry = 0
local tats = {}
local remaining = 0
local reset = 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 2])
  local burst = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  local allow_at = new_tat - interval * burst
  if allow_at > now and allow_at - now > retry then retry = allow_at - now end
  tats[i] = new_tat
  if i == 1 then
    if allow_at > now then
      remaining = 0
      reset = tat - now
    else
      remaining = math.floor((now - allow_at) / interval)
      reset = new_tat - now
    end
  end
end
if retry > 0 then
  return {0, math.ceil(retry), remaining, math.ceil(reset)}
end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000) + 1)
end
return {1, 0, remaining, math.ceil(reset)}
"""

# KEYS[1]: bucket. ARGV: interval_us, cost delta (negative gives back). Settles a reservation.
ADJUST_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local delta = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * delta
if new_tat <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 1
"""


class LocalGcra:
    """The same algorithm in this process only: the fallback when Redis is unreachable."""

    def __init__(self, clock_us: object = None) -> None:
        self._tats: dict[str, float] = {}
        self._now = clock_us if callable(clock_us) else (lambda: time.time_ns() / 1000)

    def acquire(self, buckets: list[Bucket]) -> Decision:
        now: float = self._now()
        retry = 0.0
        new_tats: list[float] = []
        remaining, reset = 0, 0.0
        for i, b in enumerate(buckets):
            tat = max(self._tats.get(b.key, now), now)
            new_tat = tat + b.interval_us * b.cost
            allow_at = new_tat - b.interval_us * b.burst
            if allow_at > now:
                retry = max(retry, allow_at - now)
            new_tats.append(new_tat)
            if i == 0:
                if allow_at > now:
                    remaining, reset = 0, tat - now
                else:
                    remaining, reset = math.floor((now - allow_at) / b.interval_us), new_tat - now
        if retry > 0:
            return Decision(False, math.ceil(retry), remaining, math.ceil(reset))
        for b, tat in zip(buckets, new_tats, strict=True):
            self._tats[b.key] = tat
        if len(self._tats) > 100_000:  # drop full buckets so memory stays bounded
            self._tats = {k: v for k, v in self._tats.items() if v > now}
        return Decision(True, 0, remaining, math.ceil(reset))

    def adjust(self, bucket: Bucket, delta: float) -> None:
        now: float = self._now()
        tat = max(self._tats.get(bucket.key, now), now) + bucket.interval_us * delta
        if tat <= now:
            self._tats.pop(bucket.key, None)
        else:
            self._tats[bucket.key] = tat
