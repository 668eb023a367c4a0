"""Provider HTTP outcomes -> the mesh's error language, shared by every SDK's error mapping
(the openai and anthropic SDKs fail in the same shapes: timeout, connection, HTTP status).
Never echoes the API key, even masked."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

import structlog

from services.common.errors import (
    Aborted,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    MakotoError,
    NotFound,
    ResourceExhausted,
    Unavailable,
)

log = structlog.get_logger("makoto.llm.provider")

# ErrorInfo reason when the provider refused the binding's key (the service then rebuilds the
# client on the next call: the secret may have been rotated).
CREDENTIALS_REJECTED = "LLM_CREDENTIALS_REJECTED"
_MAX_MESSAGE = 500


def retry_after_seconds(headers: Mapping[str, str] | None, default: float = 1.0) -> float:
    """Retry-After (seconds or HTTP date) or retry-after-ms, else the default."""
    if headers is None:
        return default
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000.0, 0.001)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value:
        try:
            return max(float(value), 0.001)
        except ValueError:
            parsed = email.utils.parsedate_tz(value)
            if parsed is not None:
                return max(float(email.utils.mktime_tz(parsed)) - time.time(), 0.001)
    return default


def scrub(text: str, secret: str) -> str:
    if secret:
        text = text.replace(secret, "***")
        if len(secret) >= 8:
            text = text.replace(secret[-4:], "****")  # masked echoes keep the last four
    return text[:_MAX_MESSAGE]


def timed_out(provider: str) -> MakotoError:
    return DeadlineExceeded(f"LLM provider {provider} did not answer in time")


def unreachable(provider: str) -> MakotoError:
    return Unavailable(f"LLM provider {provider} is unreachable", reason="LLM_PROVIDER_UNREACHABLE")


def unreadable(provider: str, model: str, error: BaseException) -> MakotoError:
    log.warning("provider answer not understood", provider=provider, model=model, error=type(error).__name__)
    return Unavailable(
        f"LLM provider {provider} gave an answer that could not be read", reason="LLM_PROVIDER_ERROR"
    )


def status_error(
    status: int,
    *,
    provider: str,
    model: str,
    message: str,
    headers: Mapping[str, str] | None,
    request_id: str | None = None,
    quota_exhausted: bool = False,
) -> MakotoError:
    """`message` is the provider's own text, already scrubbed; only 400-class input errors pass it on."""
    log.warning("provider error", provider=provider, model=model, status=status, request_id=request_id)
    if status in (401, 403):
        return FailedPrecondition("LLM binding credentials rejected", reason=CREDENTIALS_REJECTED)
    if status == 429:
        if quota_exhausted:
            return ResourceExhausted(f"LLM provider {provider} quota exhausted", reason="LLM_PROVIDER_QUOTA")
        return ResourceExhausted(
            f"LLM provider {provider} rate limit reached",
            retry_after_seconds=retry_after_seconds(headers),
            reason="LLM_PROVIDER_RATE_LIMITED",
        )
    if status == 404:
        return NotFound(f"model {model!r} not found at LLM provider {provider}", reason="LLM_MODEL_NOT_FOUND")
    if status in (400, 413, 422):
        return InvalidArgument(
            f"LLM provider {provider} rejected the request: {message or f'HTTP {status}'}",
            reason="LLM_REQUEST_REJECTED",
        )
    if status in (408, 504):
        return DeadlineExceeded(f"LLM provider {provider} timed out")
    if status == 409:
        return Aborted(f"LLM provider {provider} reported a conflict", reason="LLM_PROVIDER_CONFLICT")
    if status >= 500:
        return Unavailable(f"LLM provider {provider} failed (HTTP {status})", reason="LLM_PROVIDER_ERROR")
    return FailedPrecondition(
        f"LLM provider {provider} refused the request (HTTP {status})", reason="LLM_PROVIDER_REFUSED"
    )
