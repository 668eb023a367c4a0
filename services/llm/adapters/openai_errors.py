"""The `openai` SDK's errors -> the mesh's error language (shared by the OpenAI and Azure OpenAI
adapters: both speak through the same SDK)."""

from __future__ import annotations

import httpx2
import openai

from services.common.errors import MakotoError
from services.llm.adapters.http_errors import scrub, status_error, timed_out, unreachable, unreadable


def map_openai_error(exc: BaseException, *, provider: str, model: str, secret: str) -> MakotoError:
    """Translate an SDK / transport error. `secret` is scrubbed from anything passed through."""
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return timed_out(provider)
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return unreachable(provider)
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        message = body.get("message") if isinstance(body, dict) else None
        return status_error(
            exc.status_code,
            provider=provider,
            model=model,
            message=scrub(str(message or ""), secret),
            headers=exc.response.headers,
            request_id=exc.request_id,
            quota_exhausted=exc.code == "insufficient_quota",
        )
    return unreadable(provider, model, exc)
