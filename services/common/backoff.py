"""Retries with exponential backoff, full jitter, and the backend's own hint (Retry-After):
one policy for every adapter that talks to a remote backend (object stores, secret stores).

The SDKs' own retries are switched off where this is used, so a request is retried by exactly
one layer. A hint longer than `max_hint` is not waited out: the failure goes back to the caller
(which answers RESOURCE_EXHAUSTED with RetryInfo) instead of holding the call.

Retries live inside the call's deadline (services/common/deadline.py): a back-off that would
end past it is not slept; the last failure goes back at once (UNAVAILABLE / RESOURCE_EXHAUSTED
say more than DEADLINE_EXCEEDED would). An attempt that hangs is cancelled by the deadline.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base

from services.common import deadline

T = TypeVar("T")


@dataclass(frozen=True)
class Transient:
    """A failure worth retrying: throttling (with the backend's hint, if any) or a transient one."""

    throttled: bool
    retry_after: float | None = None


# Decides whether a failure is transient (and with which hint); None means "do not retry".
Classifier = Callable[[BaseException], Transient | None]


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay: float = 0.1
    max_delay: float = 5.0
    # A Retry-After longer than this is handed to the caller (RetryInfo) instead of waited out.
    max_hint: float = 10.0

    def delay(self, attempt: int, hint: float | None) -> float:
        cap = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return max(random.uniform(0, cap), hint or 0.0)  # noqa: S311 - jitter, not cryptography


class _HintTooLong(stop_base):
    def __init__(self, classify: Classifier, max_hint: float) -> None:
        self.classify = classify
        self.max_hint = max_hint

    def __call__(self, retry_state: RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        verdict = self.classify(exc) if exc is not None else None
        return verdict is not None and (verdict.retry_after or 0.0) > self.max_hint


class _PastDeadline(stop_base):
    """Stop when the back-off tenacity just drew (it runs `wait` before `stop`) would not end
    before the call's deadline."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        left = deadline.remaining()
        return left is not None and retry_state.upcoming_sleep >= left


async def call_with_retries(op: Callable[[], Awaitable[T]], classify: Classifier, policy: RetryPolicy) -> T:
    """Run `op`, retrying what `classify` calls transient; the last failure is re-raised as is."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        verdict = classify(exc) if exc is not None else None
        return policy.delay(state.attempt_number, verdict.retry_after if verdict else None)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts)
        | _HintTooLong(classify, policy.max_hint)
        | _PastDeadline(),
        wait=wait,
        retry=retry_if_exception(lambda exc: classify(exc) is not None),
        sleep=asyncio.sleep,
        reraise=True,
    )

    async def attempt() -> T:  # tenacity awaits only coroutine functions, not lambdas returning awaitables
        return await op()

    return await retrying(attempt)
