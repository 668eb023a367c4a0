"""Errors in the three wire dialects: OpenAI ({"error": {message, type, param, code}}), Azure
OpenAI ({"error": {code, message}}) and Anthropic ({"type": "error", "error": {type, message}}).
Handlers raise SimError; a middleware renders it."""

from __future__ import annotations

from typing import Any, Literal

from services.llm.openai_wire import WireError

Dialect = Literal["openai", "azure", "anthropic"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class SimError(WireError):
    """A WireError the simulator can also render in the Azure and Anthropic dialects."""

    def body(self, dialect: Dialect = "openai") -> dict[str, Any]:
        if dialect == "anthropic":
            kind = _ANTHROPIC_TYPES.get(self.status, "api_error")
            return {"type": "error", "error": {"type": kind, "message": self.message}}
        if dialect == "azure":
            return {"error": {"code": self.code or str(self.status), "message": self.message}}
        return super().body()


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> SimError:
    return SimError(400, message, param=param, code=code)


def model_not_found(model: str, dialect: Dialect) -> SimError:
    if dialect == "anthropic":
        return SimError(404, f"model: {model}")
    if dialect == "azure":
        return SimError(
            404,
            "The API deployment for this resource does not exist. If you created the deployment "
            "within the last 5 minutes, please wait a moment and try again.",
            code="DeploymentNotFound",
        )
    return SimError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
        param="model",
    )


def rate_limited(model: str, retry_after: int) -> SimError:
    return SimError(
        429,
        f"Rate limit reached for {model} (simulated). Please try again in {retry_after}s.",
        type_="requests",
        code="rate_limit_exceeded",
        headers={
            "retry-after": str(retry_after),
            "x-ratelimit-limit-requests": "1",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{retry_after}s",
        },
    )


def server_error() -> SimError:
    return SimError(
        500,
        "The server had an error while processing your request (simulated).",
        type_="server_error",
    )


def mask_key(key: str) -> str:
    """What OpenAI shows of a wrong key: a few leading and the last four characters."""
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * min(len(key) - 7, 20)}{key[-4:]}"
