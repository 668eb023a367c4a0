"""S3 error mapping and retries: botocore/aiohttp failures -> the mesh's error language.

The SDK's own retries are off (max_attempts=1) so one policy decides: throttling (SlowDown,
503, 429) and transient failures (5xx, connection errors) are retried with exponential backoff
and full jitter, waiting at least what a Retry-After header asks; then throttling becomes
ResourceExhausted(retry_after_seconds=...) and the rest Unavailable. Messages name the binding
and the S3 error code, never the credentials.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from services.common.backoff import RetryPolicy as RetryPolicy  # re-exported: adapters take one
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
from services.storage.adapters.object_errors import ErrorClassifier, parse_retry_after
from services.storage.adapters.object_errors import ErrorContext as ErrorContext  # re-exported

T = TypeVar("T")

THROTTLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "RequestThrottled",
        "ServiceUnavailable",
        "503",
        "429",
    }
)
CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "InvalidSecurity",
        "AllAccessDisabled",
        "AccountProblem",
        "403",
    }
)
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
INVALID_CODES = frozenset(
    {
        "EntityTooLarge",
        "EntityTooSmall",
        "MetadataTooLarge",
        "KeyTooLongError",
        "InvalidArgument",
        "InvalidRange",
        "416",
        "InvalidDigest",
        "BadDigest",
        "InvalidRequest",
    }
)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def http_status(exc: BaseException) -> int:
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def retry_after(exc: BaseException) -> float | None:
    """Seconds asked by a Retry-After header (delta-seconds or an HTTP date), if any."""
    if not isinstance(exc, ClientError):
        return None
    headers: dict[str, Any] = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
    raw = next((str(v) for k, v in headers.items() if k.lower() == "retry-after"), None)
    return parse_retry_after(raw)


def is_throttle(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLE_CODES or http_status(exc) in (429, 503)


def is_connection_error(exc: BaseException) -> bool:
    return isinstance(
        exc,
        BotoConnectionError
        | HTTPClientError
        | IncompleteReadError
        | aiohttp.ClientConnectionError
        | ConnectionError
        | TimeoutError,
    )


def is_retryable(exc: BaseException) -> bool:
    if is_throttle(exc) or is_connection_error(exc):
        return True
    status = http_status(exc)
    return status >= 500 and status not in (501, 505)


def map_error(exc: BaseException, ctx: ErrorContext) -> MakotoError:
    """One S3 failure -> the error the port promises for it."""
    if isinstance(exc, MakotoError):
        return exc
    code, status = error_code(exc), http_status(exc)
    what = f"'{ctx.key}'" if ctx.key is not None else "the bucket"
    meta = {"backend": "s3", "binding": "object_store"}
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return FailedPrecondition(
            f"{ctx.label} has no usable credentials", reason="BACKEND_CREDENTIALS_MISSING", metadata=meta
        )
    if is_throttle(exc):
        hint = retry_after(exc)
        return ResourceExhausted(
            f"{ctx.label}: S3 is throttling requests ({code or status}); retry later",
            retry_after_seconds=hint if hint is not None else 1.0,
            reason="BACKEND_THROTTLED",
            metadata=meta,
        )
    if is_connection_error(exc):
        return Unavailable(f"{ctx.label}: S3 endpoint unreachable", metadata=meta)
    if code in ("PreconditionFailed", "412") or status == 412:
        if ctx.create_only:
            return AlreadyExists(
                f"object {what} already exists", reason="OBJECT_EXISTS", metadata={"key": ctx.key or ""}
            )
        return Aborted(f"object {what} changed concurrently; retry", metadata={"key": ctx.key or ""})
    if code == "ConditionalRequestConflict" or code == "NoSuchUpload":
        return Aborted(f"a concurrent write to {what} won; retry", metadata={"key": ctx.key or ""})
    if code == "NoSuchBucket":
        return FailedPrecondition(
            f"{ctx.label}: the bucket does not exist (not provisioned?)",
            reason="BUCKET_NOT_FOUND",
            metadata=meta,
        )
    if code in NOT_FOUND_CODES or status == 404:
        return NotFound(
            f"object {what} not found", reason="OBJECT_NOT_FOUND", metadata={"key": ctx.key or ""}
        )
    if code in CREDENTIAL_CODES or status in (401, 403):
        return FailedPrecondition(
            f"{ctx.label}: S3 rejected the binding's credentials ({code or status}); "
            "check the secret its credentials_secret_ref names",
            reason="BACKEND_CREDENTIALS_REJECTED",
            metadata=meta,
        )
    if code in ("InvalidRange", "416") or status == 416:
        return InvalidArgument(
            "range start is past the end of the object", field_violations=[("range_start", "past the end")]
        )
    if code == "MetadataTooLarge":
        return InvalidArgument(
            "user metadata too large for S3 (2 KB)", field_violations=[("user_metadata", "too large for S3")]
        )
    if code in INVALID_CODES:
        return InvalidArgument(f"S3 refused the request ({code})")
    if code == "BucketAlreadyExists":
        return FailedPrecondition(
            f"{ctx.label}: the bucket name is taken by another account",
            reason="BUCKET_NAME_TAKEN",
            metadata=meta,
        )
    if status >= 500 or isinstance(exc, BotoCoreError):
        return Unavailable(f"{ctx.label}: S3 failed ({code or status or type(exc).__name__})", metadata=meta)
    return Internal(f"{ctx.label}: unexpected S3 error ({code or status or type(exc).__name__})")


CLASSIFIER = ErrorClassifier(is_retryable, retry_after, map_error)


async def call(op: Callable[[], Awaitable[T]], ctx: ErrorContext, policy: RetryPolicy) -> T:
    """Run one S3 request with the shared retry policy; failures come out mapped."""
    return await CLASSIFIER.call(op, ctx, policy)
