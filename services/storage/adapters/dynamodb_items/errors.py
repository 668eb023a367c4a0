"""DynamoDB errors -> the service's error language, and retries of throttled calls.

Throttling (ProvisionedThroughputExceededException, ThrottlingException, RequestLimitExceeded)
is retried here with exponential backoff and full jitter (botocore's own retries are switched
off, so one place decides); when the attempts run out the caller gets RESOURCE_EXHAUSTED with a
retry hint. Messages name the binding and the DynamoDB error code, never credentials.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from services.common import deadline
from services.common.errors import (
    FailedPrecondition,
    Internal,
    InvalidArgument,
    MakotoError,
    ResourceExhausted,
    Unavailable,
)
from services.storage.adapters.dynamodb_items.config import RetryPolicy
from services.storage.adapters.item_errors import credentials_rejected, not_provisioned

T = TypeVar("T")

THROTTLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "ThrottlingError",  # as a TransactionCanceledException cancellation reason
        "ProvisionedThroughputExceeded",
    }
)
CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "AccessDeniedException",
    }
)
_LIMIT_CODES = frozenset({"LimitExceededException", "ItemCollectionSizeLimitExceededException"})
_META = {"binding": "item_store", "backend": "dynamodb"}
_jitter = random.SystemRandom()


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def backoff_seconds(attempt: int, policy: RetryPolicy) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return _jitter.uniform(0.0, min(policy.cap_seconds, policy.base_seconds * 2**attempt))


def exhausted(what: str, policy: RetryPolicy) -> ResourceExhausted:
    return ResourceExhausted(
        f"DynamoDB kept throttling {what} after {policy.max_attempts} attempts",
        retry_after_seconds=policy.cap_seconds,
        reason="BACKEND_THROTTLED",
        metadata=_META,
    )


def translate(exc: BaseException, binding: str, table: str) -> MakotoError:
    """The service error for a failed DynamoDB call (throttling is handled by `call`)."""
    if isinstance(exc, MakotoError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in CREDENTIAL_CODES or status == 403:  # 403: signature / token refused
            return credentials_rejected(binding, "dynamodb", "DynamoDB", code)
        if code == "ResourceNotFoundException":
            return not_provisioned(binding, "dynamodb", f"table {table!r}")
        if code == "ValidationException":
            message = str(exc.response.get("Error", {}).get("Message", ""))[:300]
            return InvalidArgument(f"DynamoDB refused the request: {message}")
        if code in THROTTLE_CODES or code in _LIMIT_CODES:
            return ResourceExhausted(
                f"DynamoDB limit reached ({code})",
                retry_after_seconds=1.0,
                reason="BACKEND_THROTTLED",
                metadata=_META,
            )
        if status >= 500 or code in ("InternalServerError", "ServiceUnavailable"):
            return Unavailable(f"{binding}: DynamoDB answered {code or status}", metadata=_META)
        return Internal("unexpected DynamoDB error")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return FailedPrecondition(
            f"{binding}: no usable AWS credentials", reason="BINDING_CREDENTIALS_MISSING", metadata=_META
        )
    if isinstance(exc, (BotoConnectionError, HTTPClientError, OSError)):
        return Unavailable(f"{binding}: DynamoDB endpoint unreachable", metadata=_META)
    if isinstance(exc, BotoCoreError):
        return Unavailable(f"{binding}: DynamoDB call failed ({type(exc).__name__})", metadata=_META)
    return Internal("unexpected DynamoDB error")


async def call(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    binding: str,
    table: str,
    what: str,
    passthrough: frozenset[str] = frozenset(),
) -> T:
    """Run one DynamoDB call: throttling retried with backoff, errors translated. ClientErrors
    whose code is in passthrough reach the caller unchanged (it knows what they mean)."""
    for attempt in range(policy.max_attempts):
        try:
            return await fn()
        except ClientError as exc:
            code = error_code(exc)
            if code in passthrough:
                raise
            if code not in THROTTLE_CODES:
                raise translate(exc, binding, table) from None
            if attempt + 1 < policy.max_attempts:
                pause = backoff_seconds(attempt, policy)
                left = deadline.remaining()
                if left is not None and pause >= left:
                    break  # the back-off would outlast the call: answer throttled now
                await asyncio.sleep(pause)
        except (BotoCoreError, OSError) as exc:  # TimeoutError is an OSError
            raise translate(exc, binding, table) from None
    raise exhausted(what, policy)


def response_of(exc: ClientError) -> dict[str, Any]:
    return exc.response  # type: ignore[no-any-return]
