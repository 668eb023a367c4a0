"""Per-tenant request and token rate limits (the binding's rpm_limit / tpm_limit), in memory.

Token buckets refill continuously (limit / 60 per second, burst = the limit). A request
reserves its estimated prompt tokens up front; the provider's reported usage settles the
difference afterwards (the bucket may go negative, delaying the next calls).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.common.errors import ResourceExhausted

Clock = Callable[[], float]


class TokenBucket:
    def __init__(self, per_minute: int, clock: Clock = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._level = self.capacity
        self._clock = clock
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._updated) * self._rate)
        self._updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` is available (0 if it is now)."""
        self._refill()
        missing = amount - self._level
        return 0.0 if missing <= 0 else missing / self._rate

    def take(self, amount: float) -> None:
        self._refill()
        self._level -= amount

    def give_back(self, amount: float) -> None:
        self._refill()
        self._level = min(self.capacity, self._level + amount)


class TenantLimiter:
    def __init__(self, rpm: int, tpm: int, clock: Clock = time.monotonic) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._requests = TokenBucket(rpm, clock) if rpm > 0 else None
        self._tokens = TokenBucket(tpm, clock) if tpm > 0 else None

    def acquire(self, tokens: int) -> None:
        """Take one request and `tokens` estimated tokens, or raise RESOURCE_EXHAUSTED with the
        time after which a retry can succeed."""
        if self._tokens is not None and tokens > self._tokens.capacity:
            raise ResourceExhausted(
                f"request needs about {tokens} tokens, more than the tenant's limit of "
                f"{self.tpm} tokens per minute",
                reason="LLM_TPM_LIMIT",
            )
        waits = []
        if self._requests is not None:
            waits.append((self._requests.wait_for(1), f"{self.rpm} requests per minute"))
        if self._tokens is not None:
            waits.append((self._tokens.wait_for(tokens), f"{self.tpm} tokens per minute"))
        wait, what = max(waits, default=(0.0, ""))
        if wait > 0:
            raise ResourceExhausted(
                f"tenant LLM rate limit reached ({what})",
                retry_after_seconds=round(wait, 3),
                reason="LLM_RATE_LIMITED",
            )
        if self._requests is not None:
            self._requests.take(1)
        if self._tokens is not None:
            self._tokens.take(tokens)

    def settle(self, reserved: int, actual: int) -> None:
        """Correct a reservation by the provider's reported usage."""
        if self._tokens is not None and actual != reserved:
            self._tokens.give_back(reserved - actual)
