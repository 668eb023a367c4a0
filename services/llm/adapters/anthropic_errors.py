"""The `anthropic` SDK's errors -> the mesh's error language."""

from __future__ import annotations

import anthropic
import httpx2

from services.common.errors import MakotoError
from services.llm.adapters.http_errors import scrub, status_error, timed_out, unreachable, unreadable


def map_anthropic_error(exc: BaseException, *, model: str, secret: str) -> MakotoError:
    provider = "anthropic"
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return timed_out(provider)
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return unreachable(provider)
    if isinstance(exc, anthropic.APIStatusError):
        return status_error(
            exc.status_code,
            provider=provider,
            model=model,
            message=scrub(exc.api_message or "", secret),
            headers=exc.response.headers,
            request_id=exc.request_id,
        )
    return unreadable(provider, model, exc)
