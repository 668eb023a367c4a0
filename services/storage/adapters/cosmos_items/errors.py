"""Cosmos DB errors -> the service's error language.

The SDK itself retries 429s honouring x-ms-retry-after-ms (throttle_retries, bounded wait);
a 429 that still comes back is RESOURCE_EXHAUSTED carrying the service's retry hint. Item-level
404 / 409 / 412 are handled where their meaning is known (store.py); what reaches translate()
is about the binding or the backend. Messages name the binding, never the account key.
"""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from services.common.errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    MakotoError,
    ResourceExhausted,
    Unavailable,
)
from services.storage.adapters.item_errors import credentials_rejected, not_provisioned

_META = {"binding": "item_store", "backend": "cosmos"}


def status_of(exc: BaseException) -> int | None:
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        return int(status) if status is not None else None
    return None


def retry_after_seconds(exc: HttpResponseError, default: float = 1.0) -> float:
    headers = getattr(exc, "headers", None) or {}
    raw = headers.get("x-ms-retry-after-ms")
    try:
        return max(0.001, int(raw) / 1000.0) if raw is not None else default
    except (TypeError, ValueError):
        return default


def translate(exc: BaseException, binding: str) -> MakotoError:
    if isinstance(exc, MakotoError):
        return exc
    if isinstance(exc, ClientAuthenticationError) or status_of(exc) in (401, 403):
        return credentials_rejected(binding, "cosmos", "Cosmos DB")
    if isinstance(exc, HttpResponseError):
        status = status_of(exc)
        if status == 429:
            return ResourceExhausted(
                "Cosmos DB kept throttling the request (429) after retries",
                retry_after_seconds=retry_after_seconds(exc),
                reason="BACKEND_THROTTLED",
                metadata=_META,
            )
        if status == 404:
            return not_provisioned(binding, "cosmos", "the database or container")
        if status == 413:
            return InvalidArgument(
                "item too large for Cosmos DB",
                field_violations=[("item", "larger than Cosmos DB allows")],
                reason="ITEM_TOO_LARGE",
            )
        if status == 400:
            return InvalidArgument("Cosmos DB refused the request as malformed")
        if status == 408:
            return DeadlineExceeded("Cosmos DB timed out")
        if status is None or status >= 500 or status in (410, 449):
            return Unavailable(f"{binding}: Cosmos DB answered {status}", metadata=_META)
        return Internal("unexpected Cosmos DB error")
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, OSError)):
        return Unavailable(f"{binding}: Cosmos DB endpoint unreachable", metadata=_META)
    if isinstance(exc, AzureError):
        return Unavailable(f"{binding}: Cosmos DB call failed ({type(exc).__name__})", metadata=_META)
    return Internal("unexpected Cosmos DB error")
