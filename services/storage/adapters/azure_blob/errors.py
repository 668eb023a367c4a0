"""Azure Blob error mapping and retries: azure-core failures -> the mesh's error language.

The SDK's retry policy is off (retry_total=0): its storage policy neither retries 429 nor honours
Retry-After, and its default backoff starts at 15 s. Here throttling (503 ServerBusy, 500
OperationTimedOut, 429) and transient failures (other 5xx, connection errors) are retried with
exponential backoff and full jitter, waiting at least what Retry-After / x-ms-retry-after-ms ask;
then throttling becomes ResourceExhausted(retry_after_seconds=...) and the rest Unavailable.
Messages name the binding and the Azure error code, never the key or SAS.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from azure.core.exceptions import AzureError, HttpResponseError

from services.common.backoff import RetryPolicy as RetryPolicy  # re-exported: adapters take one
from services.common.errors import InvalidArgument, MakotoError, Unavailable
from services.storage.adapters.object_errors import ErrorClassifier, parse_retry_after, past_end
from services.storage.adapters.object_errors import ErrorContext as ErrorContext  # re-exported

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


class BlobErrors(ErrorClassifier):
    service, backend, holder = "Azure Blob", "azure_blob", "the container"

    def error_code(self, exc: BaseException) -> str:
        code = getattr(exc, "error_code", None) if isinstance(exc, HttpResponseError) else None
        if code is None:
            code = _headers(exc).get("x-ms-error-code")
        return str(getattr(code, "value", code) or "")

    def http_status(self, exc: BaseException) -> int:
        return int(exc.status_code or 0) if isinstance(exc, HttpResponseError) else 0

    def retry_after(self, exc: BaseException) -> float | None:
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

    def is_throttle(self, exc: BaseException) -> bool:
        return self.http_status(exc) in (429, 503) or self.error_code(exc) in THROTTLE_CODES

    def is_connection_error(self, exc: BaseException) -> bool:
        if isinstance(exc, HttpResponseError):
            return False
        return isinstance(exc, AzureError | aiohttp.ClientConnectionError | ConnectionError | TimeoutError)

    def map_response(
        self, exc: BaseException, ctx: ErrorContext, code: str, status: int
    ) -> MakotoError | None:
        if code == "ContainerNotFound":
            return self.not_provisioned(ctx, "CONTAINER_NOT_FOUND")
        if code == "ContainerBeingDeleted":
            return Unavailable(
                f"{ctx.label}: the container is being deleted; retry later", retry_after_seconds=30.0
            )
        if status == 404:
            return self.not_found(ctx)
        if status in (401, 403) or code in CREDENTIAL_CODES:
            return self.credentials_rejected(ctx, code, status)
        if code == "BlobAlreadyExists" or (status in (409, 412) and ctx.create_only):
            return self.exists(ctx)
        if status in (409, 412) or code == "InvalidBlockList":
            # InvalidBlockList: a concurrent commit to the same blob discarded our staged blocks.
            return self.lost_race(ctx)
        if status == 416 or code == "InvalidRange":
            return past_end()
        if code in METADATA_CODES:
            return InvalidArgument(
                f"Azure Blob refused the user metadata ({code})", field_violations=[("user_metadata", code)]
            )
        if 400 <= status < 500:
            return InvalidArgument(f"Azure Blob refused the request ({code or status})")
        return None


CLASSIFIER = BlobErrors()
error_code = CLASSIFIER.error_code
map_error = CLASSIFIER.map_error
call = CLASSIFIER.call
