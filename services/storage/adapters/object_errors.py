"""What the object adapters' error handling shares: the error context, Retry-After parsing, the
one error classifier interface, and the one way a backend request runs -- the shared retry
policy around it (throttling and transient failures retried with backoff, at least as long as
Retry-After asks), and what still fails mapped to the mesh's error language.

A backend subclasses ErrorClassifier (its errors.py) and supplies how to read its SDK's
failures (error_code, http_status, retry_after, is_throttle, is_connection_error) and the cases
only it has (map_response). What every object backend answers alike is here, once: throttling
-> ResourceExhausted with the hint, unreachable -> Unavailable, rejected credentials ->
FailedPrecondition naming the binding (never the secret), an existing key on a create-only
write -> AlreadyExists, a lost condition -> Aborted, a missing object -> NotFound, a range past
the end -> InvalidArgument, other 5xx -> Unavailable, the rest Internal.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from services.common.backoff import RetryPolicy, Transient, call_with_retries
from services.common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    MakotoError,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

T = TypeVar("T")


@dataclass(frozen=True)
class ErrorContext:
    label: str  # the binding's label (config.label)
    key: str | None = None
    create_only: bool = False

    @property
    def key_meta(self) -> dict[str, str]:
        return {"key": self.key or ""}


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


def past_end() -> InvalidArgument:
    return InvalidArgument(
        "range start is past the end of the object", field_violations=[("range_start", "past the end")]
    )


class ErrorClassifier(ABC):
    """A backend's view of its SDK's failures (one per adapter, in its errors.py)."""

    service: str  # how messages name the backend: "S3", "Azure Blob"
    backend: str  # the metadata value: "s3", "azure_blob"
    holder: str  # what holds the objects: "the bucket", "the container"

    @abstractmethod
    def error_code(self, exc: BaseException) -> str: ...

    @abstractmethod
    def http_status(self, exc: BaseException) -> int: ...

    @abstractmethod
    def retry_after(self, exc: BaseException) -> float | None: ...

    @abstractmethod
    def is_throttle(self, exc: BaseException) -> bool: ...

    @abstractmethod
    def is_connection_error(self, exc: BaseException) -> bool: ...

    @abstractmethod
    def map_response(
        self, exc: BaseException, ctx: ErrorContext, code: str, status: int
    ) -> MakotoError | None:
        """The backend's own cases, in its order; None: the shared tail decides."""

    # -- shared ------------------------------------------------------------------------------

    @property
    def meta(self) -> dict[str, str]:
        return {"backend": self.backend, "binding": "object_store"}

    def what(self, ctx: ErrorContext) -> str:
        return f"'{ctx.key}'" if ctx.key is not None else self.holder

    def is_retryable(self, exc: BaseException) -> bool:
        if self.is_throttle(exc) or self.is_connection_error(exc):
            return True
        status = self.http_status(exc)
        return status >= 500 and status not in (501, 505)

    def map_error(self, exc: BaseException, ctx: ErrorContext) -> MakotoError:
        """One backend failure -> the error the port promises for it."""
        if isinstance(exc, MakotoError):
            return exc
        code, status = self.error_code(exc), self.http_status(exc)
        if self.is_throttle(exc):
            hint = self.retry_after(exc)
            return ResourceExhausted(
                f"{ctx.label}: {self.service} is throttling requests ({code or status}); retry later",
                retry_after_seconds=hint if hint is not None else 1.0,
                reason="BACKEND_THROTTLED",
                metadata=self.meta,
            )
        if self.is_connection_error(exc):
            return Unavailable(f"{ctx.label}: {self.service} endpoint unreachable", metadata=self.meta)
        specific = self.map_response(exc, ctx, code, status)
        if specific is not None:
            return specific
        if status >= 500:
            return Unavailable(f"{ctx.label}: {self.service} failed ({code or status})", metadata=self.meta)
        return Internal(
            f"{ctx.label}: unexpected {self.service} error ({code or status or type(exc).__name__})"
        )

    def credentials_rejected(self, ctx: ErrorContext, code: str, status: int) -> FailedPrecondition:
        return FailedPrecondition(
            f"{ctx.label}: {self.service} rejected the binding's credentials ({code or status}); "
            "check the secret its credentials_secret_ref names",
            reason="BACKEND_CREDENTIALS_REJECTED",
            metadata=self.meta,
        )

    def not_provisioned(self, ctx: ErrorContext, reason: str) -> FailedPrecondition:
        return FailedPrecondition(
            f"{ctx.label}: {self.holder} does not exist (not provisioned?)", reason=reason, metadata=self.meta
        )

    def exists(self, ctx: ErrorContext) -> AlreadyExists:
        return AlreadyExists(
            f"object {self.what(ctx)} already exists", reason="OBJECT_EXISTS", metadata=ctx.key_meta
        )

    def lost_race(self, ctx: ErrorContext) -> Aborted:
        return Aborted(f"a concurrent write to {self.what(ctx)} won; retry", metadata=ctx.key_meta)

    def not_found(self, ctx: ErrorContext) -> NotFound:
        return NotFound(
            f"object {self.what(ctx)} not found", reason="OBJECT_NOT_FOUND", metadata=ctx.key_meta
        )

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
