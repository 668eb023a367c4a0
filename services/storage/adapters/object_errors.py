"""What the object adapters' error handling shares: the error context, Retry-After parsing, and
the one way a backend request runs -- the shared retry policy around it (throttling and
transient failures retried with backoff, at least as long as Retry-After asks), and what still
fails mapped to the mesh's error language by the backend's classifier."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from services.common.backoff import RetryPolicy, Transient, call_with_retries
from services.common.errors import MakotoError

T = TypeVar("T")


@dataclass(frozen=True)
class ErrorContext:
    label: str  # the binding's label (config.label)
    key: str | None = None
    create_only: bool = False


def parse_retry_after(raw: str | None) -> float | None:
    """Seconds a Retry-After value asks for: delta-seconds or an HTTP date; None if absent or bad."""
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class ErrorClassifier:
    """A backend's view of its SDK's failures (one per adapter, in its errors.py)."""

    is_retryable: Callable[[BaseException], bool]
    retry_after: Callable[[BaseException], float | None]
    map_error: Callable[[BaseException, ErrorContext], MakotoError]

    def transient(self, exc: BaseException) -> Transient | None:
        if not self.is_retryable(exc):
            return None
        hint = self.retry_after(exc)
        return Transient(throttled=hint is not None, retry_after=hint)

    async def call(self, op: Callable[[], Awaitable[T]], ctx: ErrorContext, policy: RetryPolicy) -> T:
        """Run one backend request with the shared retry policy; failures come out mapped."""
        try:
            return await call_with_retries(op, self.transient, policy)
        except MakotoError:
            raise
        except Exception as exc:
            raise self.map_error(exc, ctx) from exc
