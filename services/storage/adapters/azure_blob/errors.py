"""Azure Blob error mapping and retries: azure-core failures -> the mesh's error language.

The SDK's retry policy is off (retry_total=0): its storage policy neither retries 429 nor honours
Retry-After, and its default backoff starts at 15 s. Here throttling (503 ServerBusy, 500
OperationTimedOut, 429) and transient failures (other 5xx, connection errors) are retried with
exponential backoff and full jitter, waiting at least what Retry-After / x-ms-retry-after-ms ask;
then throttling becomes ResourceExhausted(retry_after_seconds=...) and the rest Unavailable.
Messages name the binding and the Azure error code, never the key or SAS.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import aiohttp
from azure.core.exceptions import AzureError, HttpResponseError

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

THROTTLE_CODES = frozenset({"ServerBusy", "OperationTimedOut", "TooManyRequests"})
CREDENTIAL_CODES = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationSourceIPMismatch",
        "InsufficientAccountPermissions",
        "AccountIsDisabled",
        "InvalidAuthenticationInfo",
        "NoAuthenticationInformation",
    }
)
METADATA_CODES = frozenset({"InvalidMetadata", "MetadataTooLarge", "EmptyMetadataKey"})


def _headers(exc: BaseException) -> Mapping[str, str]:
    response = getattr(exc, "response", None) if isinstance(exc, HttpResponseError) else None
    headers: Mapping[str, str] = getattr(response, "headers", None) or {}
    return headers


def error_code(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None) if isinstance(exc, HttpResponseError) else None
    if code is None:
        code = _headers(exc).get("x-ms-error-code")
    return str(getattr(code, "value", code) or "")


def http_status(exc: BaseException) -> int:
    return int(exc.status_code or 0) if isinstance(exc, HttpResponseError) else 0


def retry_after(exc: BaseException) -> float | None:
    """Seconds asked by Retry-After (delta-seconds or HTTP date) or retry-after-ms headers."""
    headers = _headers(exc)
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        raw_ms = headers.get(name)
        if raw_ms is not None:
            try:
                return max(0.0, float(raw_ms) / 1000)
            except ValueError:
                pass
    return parse_retry_after(headers.get("Retry-After"))


def is_throttle(exc: BaseException) -> bool:
    return http_status(exc) in (429, 503) or error_code(exc) in THROTTLE_CODES


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, HttpResponseError):
        return False
    return isinstance(exc, AzureError | aiohttp.ClientConnectionError | ConnectionError | TimeoutError)


def is_retryable(exc: BaseException) -> bool:
    if is_throttle(exc) or is_connection_error(exc):
        return True
    status = http_status(exc)
    return status >= 500 and status not in (501, 505)


def map_error(exc: BaseException, ctx: ErrorContext) -> MakotoError:
    """One Azure failure -> the error the port promises for it."""
    if isinstance(exc, MakotoError):
        return exc
    code, status = error_code(exc), http_status(exc)
    what = f"'{ctx.key}'" if ctx.key is not None else "the container"
    meta = {"backend": "azure_blob", "binding": "object_store"}
    key_meta = {"key": ctx.key or ""}
    if is_throttle(exc):
        hint = retry_after(exc)
        return ResourceExhausted(
            f"{ctx.label}: Azure Blob is throttling requests ({code or status}); retry later",
            retry_after_seconds=hint if hint is not None else 1.0,
            reason="BACKEND_THROTTLED",
            metadata=meta,
        )
    if is_connection_error(exc):
        return Unavailable(f"{ctx.label}: Azure Blob endpoint unreachable", metadata=meta)
    if code == "ContainerNotFound":
        return FailedPrecondition(
            f"{ctx.label}: the container does not exist (not provisioned?)",
            reason="CONTAINER_NOT_FOUND",
            metadata=meta,
        )
    if code == "ContainerBeingDeleted":
        return Unavailable(
            f"{ctx.label}: the container is being deleted; retry later", retry_after_seconds=30.0
        )
    if status == 404:
        return NotFound(f"object {what} not found", reason="OBJECT_NOT_FOUND", metadata=key_meta)
    if status in (401, 403) or code in CREDENTIAL_CODES:
        return FailedPrecondition(
            f"{ctx.label}: Azure Blob rejected the binding's credentials ({code or status}); "
            "check the secret its credentials_secret_ref names",
            reason="BACKEND_CREDENTIALS_REJECTED",
            metadata=meta,
        )
    if (
        code == "BlobAlreadyExists"
        or (status == 412 and ctx.create_only)
        or (status == 409 and ctx.create_only)
    ):
        return AlreadyExists(f"object {what} already exists", reason="OBJECT_EXISTS", metadata=key_meta)
    if status in (409, 412) or code == "InvalidBlockList":
        # InvalidBlockList: a concurrent commit to the same blob discarded our staged blocks.
        return Aborted(f"a concurrent write to {what} won; retry", metadata=key_meta)
    if status == 416 or code == "InvalidRange":
        return InvalidArgument(
            "range start is past the end of the object", field_violations=[("range_start", "past the end")]
        )
    if code in METADATA_CODES:
        return InvalidArgument(
            f"Azure Blob refused the user metadata ({code})", field_violations=[("user_metadata", code)]
        )
    if 400 <= status < 500:
        return InvalidArgument(f"Azure Blob refused the request ({code or status})")
    if status >= 500:
        return Unavailable(f"{ctx.label}: Azure Blob failed ({code or status})", metadata=meta)
    return Internal(f"{ctx.label}: unexpected Azure Blob error ({code or type(exc).__name__})")


CLASSIFIER = ErrorClassifier(is_retryable, retry_after, map_error)


async def call(op: Callable[[], Awaitable[T]], ctx: ErrorContext, policy: RetryPolicy) -> T:
    """Run one Azure request with the shared retry policy; failures come out mapped."""
    return await CLASSIFIER.call(op, ctx, policy)
