"""OpenAI's REST JSON <-> LLMService messages, and gRPC errors -> OpenAI's error JSON.

Only what the OpenAI-compatible surface (services/llm/openai_api.py) serves: chat completions
(whole and streamed), embeddings and the model list. A request field this gateway cannot honour
(tools, n > 1, token arrays as input, ...) is refused with a 400 naming it, never dropped.
"""

from __future__ import annotations

import base64
import json
import math
import sys
from array import array
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from makoto.llm.v1 import llm_pb2


class WireError(Exception):
    """An error answered in OpenAI's shape: HTTP status, `error.type`, `error.code`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None) -> WireError:
    return WireError(400, message, param=param, code="invalid_value" if param else None)


# Chat request fields accepted and ignored because they change nothing here (the defaults).
_HARMLESS = {"stream", "stream_options", "n", "logprobs", "parallel_tool_calls", "store", "metadata"}
_SUPPORTED = {"model", "messages", "temperature", "max_tokens", "max_completion_tokens", "user"}


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts (OpenAI's array form)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise bad_request("only text content parts are supported", where)
            parts.append(part["text"])
        return "".join(parts)
    raise bad_request("content must be a string or a list of text parts", where)


def chat_request(body: Any, tenant_id: str) -> tuple[llm_pb2.CreateChatCompletionRequest, bool, bool]:
    """(request, stream, include_usage) from a /v1/chat/completions body."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    unknown = sorted(k for k in body if k not in _SUPPORTED and k not in _HARMLESS and body[k] is not None)
    if unknown:
        raise bad_request(f"unsupported parameter: {unknown[0]}", unknown[0])
    if body.get("n") not in (None, 1):
        raise bad_request("only n=1 is supported", "n")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model is required", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list", "messages")
    request = llm_pb2.CreateChatCompletionRequest(tenant_id=tenant_id, model=model)
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad_request("each message needs a role", f"messages[{i}].role")
        role = "system" if m["role"] == "developer" else m["role"]
        name = m.get("name") or ""
        if not isinstance(name, str):
            raise bad_request("name must be a string", f"messages[{i}].name")
        request.messages.add(role=role, content=_text(m.get("content"), f"messages[{i}].content"), name=name)
    temperature = body.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise bad_request("temperature must be a number", "temperature")
        request.temperature = float(temperature)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise bad_request("max_tokens must be an integer", "max_tokens")
        request.max_tokens = max_tokens
    user = body.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise bad_request("user must be a string", "user")
        request.user = user
    stream = body.get("stream") is True
    options = body.get("stream_options") or {}
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return request, stream, include_usage


def chat_completion(answer: llm_pb2.ChatCompletion) -> dict[str, Any]:
    usage = answer.usage
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.create_time.seconds,
        "model": answer.model,
        "choices": [
            {
                "index": c.index,
                "message": {"role": c.message.role or "assistant", "content": c.message.content},
                "logprobs": None,
                "finish_reason": c.finish_reason or None,
            }
            for c in answer.choices
        ],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
    }


class ChunkWriter:
    """LLMService stream chunks -> SSE events, each JSON-encoded once, straight to bytes."""

    def __init__(self, created: int, include_usage: bool) -> None:
        self._created = created
        self._include_usage = include_usage
        self._first = True

    def event(self, chunk: llm_pb2.ChatCompletionChunk) -> bytes | None:
        if chunk.HasField("usage"):
            if not self._include_usage:
                return None
            u = chunk.usage
            data: dict[str, Any] = {
                "id": chunk.id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": chunk.model,
                "choices": [],
                "usage": {
                    "prompt_tokens": u.prompt_tokens,
                    "completion_tokens": u.completion_tokens,
                    "total_tokens": u.total_tokens,
                },
            }
        else:
            delta: dict[str, str] = {"content": chunk.delta}
            if self._first:
                # OpenAI names the role in the first delta only.
                delta = {"role": "assistant", "content": chunk.delta}
                self._first = False
            data = {
                "id": chunk.id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": chunk.model,
                "choices": [
                    {
                        "index": chunk.index,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": chunk.finish_reason or None,
                    }
                ],
            }
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def error_event(error: WireError) -> bytes:
    """A failure after the stream started (HTTP 200 already sent): OpenAI's SDKs raise on it."""
    return b"data: " + json.dumps(error.body(), separators=(",", ":")).encode() + b"\n\n"


def embeddings_request(body: Any, tenant_id: str) -> tuple[llm_pb2.CreateEmbeddingsRequest, str]:
    """(request, encoding_format) from a /v1/embeddings body."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("model is required", "model")
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise bad_request("input must be a string or a non-empty list of strings", "input")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise bad_request("encoding_format must be float or base64", "encoding_format")
    if body.get("dimensions") is not None:
        raise bad_request("unsupported parameter: dimensions", "dimensions")
    return llm_pb2.CreateEmbeddingsRequest(tenant_id=tenant_id, model=model, input=inputs), encoding


def _base64_floats(values: Any) -> str:
    packed = array("f", values)
    if sys.byteorder == "big":  # OpenAI's base64 embeddings are little-endian float32
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def embeddings(answer: llm_pb2.CreateEmbeddingsResponse, encoding: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": e.index,
                "embedding": _base64_floats(e.values) if encoding == "base64" else list(e.values),
            }
            for e in answer.data
        ],
        "model": answer.model,
        "usage": {"prompt_tokens": answer.usage.prompt_tokens, "total_tokens": answer.usage.total_tokens},
    }


def models(answer: llm_pb2.ListModelsResponse) -> dict[str, Any]:
    """Provider models and the tenant's aliases ("chat", ...), each usable as `model`."""
    seen: dict[str, str] = {}
    for m in answer.models:
        for name in (m.alias, m.id):
            if name and name not in seen:
                seen[name] = m.provider
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": owner} for name, owner in seen.items()
        ],
    }


# -- errors ---------------------------------------------------------------------------------------

_HTTP: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "conflict_error"),
    grpc.StatusCode.ABORTED: (409, "conflict_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.CANCELLED: (499, "api_error"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "api_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "api_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error"),
}


def _details(trailers: Any) -> status_pb2.Status | None:
    for key, value in trailers or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except DecodeError:
                return None
            return status
    return None


def from_grpc(code: grpc.StatusCode, message: str, trailers: Any) -> WireError:
    """A failed LLMService call as OpenAI's error: status, type, code (our reason, lower-cased)
    and retry-after / retry-after-ms when the service said when to retry."""
    status, type_ = _HTTP.get(code, (500, "api_error"))
    reason: str | None = None
    param: str | None = None
    headers: dict[str, str] = {}
    details = _details(trailers)
    for any_ in details.details if details is not None else ():
        if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_.Unpack(info)
            reason = info.reason
        elif any_.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            any_.Unpack(retry)
            seconds = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
            headers["retry-after"] = str(max(1, math.ceil(seconds)))
            headers["retry-after-ms"] = str(max(1, round(seconds * 1000)))
        elif any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            any_.Unpack(bad)
            if bad.field_violations:
                param = bad.field_violations[0].field
    if reason == "LLM_BUDGET_EXCEEDED":
        type_ = "insufficient_quota"  # what OpenAI answers when the account's quota is used up
    if code == grpc.StatusCode.INTERNAL or status == 500:
        message = "internal error"  # never an internal detail to the caller
    return WireError(
        status, message, type_=type_, code=reason.lower() if reason else None, param=param, headers=headers
    )


def from_status(status: status_pb2.Status) -> WireError:
    """A failure the service sent inside a stream chunk (ChatCompletionChunk.error)."""
    code = next((c for c in grpc.StatusCode if c.value[0] == status.code), grpc.StatusCode.UNKNOWN)
    return from_grpc(code, status.message, (("grpc-status-details-bin", status.SerializeToString()),))
