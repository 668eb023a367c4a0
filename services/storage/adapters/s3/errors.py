"""S3 error mapping and retries: botocore/aiohttp failures -> the mesh's error language.

The SDK's own retries are off (max_attempts=1) so one policy decides: throttling (SlowDown,
503, 429) and transient failures (5xx, connection errors) are retried with exponential backoff
and full jitter, waiting at least what a Retry-After header asks; then throttling becomes
ResourceExhausted(retry_after_seconds=...) and the rest Unavailable. Messages name the binding
and the S3 error code, never the credentials.
"""

from __future__ import annotations

from typing import Any

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
from services.common.errors import Aborted, FailedPrecondition, InvalidArgument, MakotoError, Unavailable
from services.storage.adapters.object_errors import ErrorClassifier, parse_retry_after, past_end
from services.storage.adapters.object_errors import ErrorContext as ErrorContext  # re-exported

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


class S3Errors(ErrorClassifier):
    service, backend, holder = "S3", "s3", "the bucket"

    def error_code(self, exc: BaseException) -> str:
        if isinstance(exc, ClientError):
            return str(exc.response.get("Error", {}).get("Code", ""))
        return ""

    def http_status(self, exc: BaseException) -> int:
        if isinstance(exc, ClientError):
            return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return 0

    def retry_after(self, exc: BaseException) -> float | None:
        """Seconds asked by a Retry-After header (delta-seconds or an HTTP date), if any."""
        if not isinstance(exc, ClientError):
            return None
        headers: dict[str, Any] = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}
        raw = next((str(v) for k, v in headers.items() if k.lower() == "retry-after"), None)
        return parse_retry_after(raw)

    def is_throttle(self, exc: BaseException) -> bool:
        return self.error_code(exc) in THROTTLE_CODES or self.http_status(exc) in (429, 503)

    def is_connection_error(self, exc: BaseException) -> bool:
        return isinstance(
            exc,
            BotoConnectionError
            | HTTPClientError
            | IncompleteReadError
            | aiohttp.ClientConnectionError
            | ConnectionError
            | TimeoutError,
        )

    def map_response(
        self, exc: BaseException, ctx: ErrorContext, code: str, status: int
    ) -> MakotoError | None:
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return FailedPrecondition(
                f"{ctx.label} has no usable credentials",
                reason="BACKEND_CREDENTIALS_MISSING",
                metadata=self.meta,
            )
        if code in ("PreconditionFailed", "412") or status == 412:
            if ctx.create_only:
                return self.exists(ctx)
            return Aborted(f"object {self.what(ctx)} changed concurrently; retry", metadata=ctx.key_meta)
        if code == "ConditionalRequestConflict" or code == "NoSuchUpload":
            return self.lost_race(ctx)
        if code == "NoSuchBucket":
            return self.not_provisioned(ctx, "BUCKET_NOT_FOUND")
        if code in NOT_FOUND_CODES or status == 404:
            return self.not_found(ctx)
        if code in CREDENTIAL_CODES or status in (401, 403):
            return self.credentials_rejected(ctx, code, status)
        if code in ("InvalidRange", "416") or status == 416:
            return past_end()
        if code == "MetadataTooLarge":
            return InvalidArgument(
                "user metadata too large for S3 (2 KB)",
                field_violations=[("user_metadata", "too large for S3")],
            )
        if code in INVALID_CODES:
            return InvalidArgument(f"S3 refused the request ({code})")
        if code == "BucketAlreadyExists":
            return FailedPrecondition(
                f"{ctx.label}: the bucket name is taken by another account",
                reason="BUCKET_NAME_TAKEN",
                metadata=self.meta,
            )
        if status < 500 and isinstance(exc, BotoCoreError):
            return Unavailable(f"{ctx.label}: S3 failed ({code or type(exc).__name__})", metadata=self.meta)
        return None


CLASSIFIER = S3Errors()
error_code = CLASSIFIER.error_code
map_error = CLASSIFIER.map_error
call = CLASSIFIER.call
