"""One error language for every service: domain exceptions -> gRPC status with google.rpc details.

Servicers and adapters raise these; the error interceptor turns them into a google.rpc.Status
(ErrorInfo with domain "makoto", BadRequest field violations, RetryInfo) so every service
answers the same situation with the same code. Anything else becomes INTERNAL with no details.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

DOMAIN = "makoto"

# Reasons of refusals caused by the tenant's lifecycle (suspended, deleted, not active yet):
# the interceptor does not bill a call that ends with one of them.
LIFECYCLE_REFUSALS = frozenset({"TENANT_SUSPENDED", "TENANT_NOT_FOUND", "TENANT_NOT_ACTIVE"})


class MakotoError(Exception):
    """Base of all errors that carry a deliberate status code."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init_subclass__(cls, *, code: grpc.StatusCode | None = None, reason: str | None = None) -> None:
        # A subclass names its status code; its default reason is the code's name unless given.
        super().__init_subclass__()
        if code is not None:
            cls.code = code
            cls.reason = reason or code.name
        elif reason is not None:
            cls.reason = reason

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = dict(metadata or {})

    def details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        packed = any_pb2.Any()
        packed.Pack(info)
        return [packed]

    def to_status(self) -> status_pb2.Status:
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=self.details())


class InvalidArgument(MakotoError, code=grpc.StatusCode.INVALID_ARGUMENT):
    def __init__(
        self,
        message: str,
        *,
        field_violations: Sequence[tuple[str, str]] = (),
        reason: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.field_violations = list(field_violations)

    def details(self) -> list[any_pb2.Any]:
        out = super().details()
        if self.field_violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in self.field_violations
                ]
            )
            packed = any_pb2.Any()
            packed.Pack(bad)
            out.append(packed)
        return out


class Unauthenticated(MakotoError, code=grpc.StatusCode.UNAUTHENTICATED):
    pass


class PermissionDenied(MakotoError, code=grpc.StatusCode.PERMISSION_DENIED):
    pass


class NotFound(MakotoError, code=grpc.StatusCode.NOT_FOUND):
    pass


class AlreadyExists(MakotoError, code=grpc.StatusCode.ALREADY_EXISTS):
    pass


class Aborted(MakotoError, code=grpc.StatusCode.ABORTED, reason="CONDITION_FAILED"):
    """Etag / condition mismatch or a transaction conflict."""


class FailedPrecondition(MakotoError, code=grpc.StatusCode.FAILED_PRECONDITION):
    """Backend lacks a capability, binding misconfigured, or a stated precondition failed."""


class Unimplemented(MakotoError, code=grpc.StatusCode.UNIMPLEMENTED):
    pass


class _Unset(Enum):
    TOKEN = 0


_UNSET = _Unset.TOKEN


class _WithRetryInfo(MakotoError):
    """An error that tells the caller when retrying may help (google.rpc.RetryInfo)."""

    default_retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        retry_after_seconds: float | _Unset | None = _UNSET,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        # Not given: the class default (None = no RetryInfo).
        self.retry_after_seconds: float | None = (
            self.default_retry_after if isinstance(retry_after_seconds, _Unset) else retry_after_seconds
        )

    def details(self) -> list[any_pb2.Any]:
        out = super().details()
        if self.retry_after_seconds is not None:
            out.append(_retry_info(self.retry_after_seconds))
        return out


class ResourceExhausted(_WithRetryInfo, code=grpc.StatusCode.RESOURCE_EXHAUSTED):
    """Rate limit, quota, budget, or backend throttling after retries."""


class Unavailable(_WithRetryInfo, code=grpc.StatusCode.UNAVAILABLE, reason="BACKEND_UNAVAILABLE"):
    default_retry_after = 1.0


class DeadlineExceeded(MakotoError, code=grpc.StatusCode.DEADLINE_EXCEEDED):
    pass


class Internal(MakotoError, code=grpc.StatusCode.INTERNAL):
    pass


def _retry_info(seconds: float) -> any_pb2.Any:
    delay = duration_pb2.Duration()
    delay.FromNanoseconds(int(seconds * 1e9))
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return packed


def internal_status() -> status_pb2.Status:
    """What a bug looks like from outside: no internals, no secrets."""
    return status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


def status_details(err: grpc.aio.AioRpcError | grpc.RpcError) -> status_pb2.Status | None:
    """Client side: decode google.rpc.Status from an error's trailing metadata, if present."""
    from grpc_status import rpc_status

    try:
        found: status_pb2.Status | None = rpc_status.from_call(err)
        return found
    except Exception:
        return None
