"""Circuit breakers per backend endpoint: a dead backend fails fast for its tenants only.

Every adapter call runs inside `breakers.guard(key)`, where the key names one tenant's binding
to one endpoint (tenant, kind, backend, endpoint): a tenant's dead database opens that tenant's
breaker and nobody else's, and a tenant cannot trip a breaker other tenants share.

- closed: calls pass. `failure_threshold` consecutive backend failures (UNAVAILABLE, a deadline
  hit while waiting on the backend, timeouts, connection errors) open it.
- open: calls fail at once with UNAVAILABLE (reason BACKEND_CIRCUIT_OPEN) and a RetryInfo of
  the cool-down left, without touching the backend.
- half-open: after `cooldown_seconds` one call is let through as a probe (the others still fail
  fast); its success closes the breaker, its failure opens it for another cool-down.

Answers that prove the backend is alive (NOT_FOUND, ABORTED, throttling, bad input...) count as
successes. A call the client abandoned before its deadline tells nothing and counts as neither.
Only failing keys are stored (a success forgets the key), and at most `max_keys` of them.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum

import structlog

from services.common import deadline
from services.common.errors import DeadlineExceeded, Unavailable

log = structlog.get_logger("makoto.breaker")


class BreakerOpen(Unavailable):
    """Failing fast: the backend failed repeatedly and is cooling down."""

    reason = "BACKEND_CIRCUIT_OPEN"


class BreakerState(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class _Verdict(Enum):
    SUCCESS = 0
    FAILURE = 1
    NONE = 2


def classify(exc: BaseException) -> _Verdict:
    """Did this exception show the backend to be down or unresponsive?"""
    if isinstance(exc, BreakerOpen):
        return _Verdict.NONE  # a nested breaker (e.g. the secret store's) said so, not this backend
    if isinstance(exc, Unavailable | DeadlineExceeded | TimeoutError | ConnectionError):
        return _Verdict.FAILURE
    if isinstance(exc, asyncio.CancelledError):
        # Cancelled by the call's deadline while waiting on the backend: a timeout. Cancelled
        # earlier (the client went away, server shutdown): no verdict on the backend.
        return _Verdict.FAILURE if deadline.expired() else _Verdict.NONE
    if isinstance(exc, Exception):
        return _Verdict.SUCCESS  # the backend answered, with an error about the request
    return _Verdict.NONE


@dataclass
class _Circuit:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreakers:
    """All breakers of one process, keyed by backend endpoint."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 10.0,
        max_keys: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._circuits: OrderedDict[str, _Circuit] = OrderedDict()
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self.configure(failure_threshold, cooldown_seconds)

    def configure(self, failure_threshold: int, cooldown_seconds: float) -> None:
        if failure_threshold < 1 or cooldown_seconds <= 0:
            raise ValueError("breaker needs failure_threshold >= 1 and cooldown_seconds > 0")
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds

    def state(self, key: str) -> BreakerState:
        circuit = self._circuits.get(key)
        if circuit is None or circuit.opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - circuit.opened_at < self.cooldown_seconds:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def reset(self) -> None:
        self._circuits.clear()

    @asynccontextmanager
    async def guard(self, key: str, label: str) -> AsyncIterator[None]:
        """Run one backend call under the breaker of `key`; `label` names it in errors and logs."""
        probe = self._admit(key, label)
        try:
            yield
        except BaseException as exc:
            self._settle(key, label, classify(exc), probe)
            raise
        self._settle(key, label, _Verdict.SUCCESS, probe)

    def _admit(self, key: str, label: str) -> bool:
        """Let the call through (True when it is the half-open probe) or raise BreakerOpen."""
        circuit = self._circuits.get(key)
        if circuit is None or circuit.opened_at is None:
            return False
        waited = self._clock() - circuit.opened_at
        if waited >= self.cooldown_seconds and not circuit.probing:
            circuit.probing = True
            return True
        left = max(self.cooldown_seconds - waited, 0.0)
        raise BreakerOpen(
            f"{label} failed repeatedly; failing fast while it recovers",
            # While a probe is out, ask the caller to come back shortly.
            retry_after_seconds=round(left, 3) if left > 0 else 1.0,
            metadata={"backend": label},
        )

    def _settle(self, key: str, label: str, verdict: _Verdict, probe: bool) -> None:
        circuit = self._circuits.get(key)
        if verdict is _Verdict.SUCCESS:
            if circuit is not None:
                del self._circuits[key]
                if circuit.opened_at is not None:
                    log.warning("breaker closed", backend=label)
            return
        if verdict is _Verdict.NONE:
            if probe and circuit is not None:
                circuit.probing = False  # the next caller probes instead
            return
        if circuit is None:
            circuit = self._circuits[key] = _Circuit()
            while len(self._circuits) > self._max_keys:
                self._circuits.popitem(last=False)
        self._circuits.move_to_end(key)
        circuit.failures += 1
        if probe or (circuit.opened_at is None and circuit.failures >= self.failure_threshold):
            circuit.opened_at = self._clock()
            circuit.probing = False
            log.warning(
                "breaker opened",
                backend=label,
                failures=circuit.failures,
                cooldown_seconds=self.cooldown_seconds,
            )


# The process's breakers: adapters of all tenants share this table (keys keep them apart).
breakers = CircuitBreakers()
