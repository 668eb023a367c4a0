"""Endpoint logic shared by the OpenAI (/v1) and Azure OpenAI (/openai/deployments/...) routes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from services.llm.simulator import content
from services.llm.simulator.catalog import MODEL_CREATED, MODELS, Kind, SimModel
from services.llm.simulator.errors import (
    Dialect,
    SimError,
    bad_request,
    model_not_found,
    rate_limited,
    server_error,
)
from services.llm.simulator.state import CONFIG, STATE
from services.llm.tokens import count_chat_tokens, count_tokens, split_pieces, truncate

FINGERPRINT = "fp_makoto_sim"
_ROLES = {"system", "developer", "user", "assistant", "tool"}
_SIZE = re.compile(r"^(\d{1,4})x(\d{1,4})$")
_SAFE = {"filtered": False, "severity": "safe"}
_AZURE_FILTER = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}


@dataclass(frozen=True)
class Msg:
    role: str
    content: str
    name: str


def dialect_of(request: web.Request) -> Dialect:
    """Azure routes live under /openai/; Anthropic clients always send anthropic-version."""
    if request.path.startswith("/openai/"):
        return "azure"
    if request.path == "/v1/messages" or "anthropic-version" in request.headers:
        return "anthropic"
    return "openai"


def route_name(dialect: Dialect, name: str) -> str:
    return name if dialect == "openai" else f"{dialect}.{name}"


def request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise bad_request("We could not parse the JSON body of your request.") from exc
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def resolve_model(name: object, kind: Kind, dialect: Dialect, config_retry_after: int) -> SimModel:
    if not isinstance(name, str) or not name:
        raise bad_request("you must provide a model parameter", param="model")
    model = MODELS.get(name)
    if model is None:
        raise model_not_found(name, dialect)
    if model.behaviour == "ratelimit":
        raise rate_limited(name, config_retry_after)
    if model.behaviour == "error":
        raise server_error()
    if model.kind not in (kind, "any"):
        raise bad_request(f"The model `{name}` does not support this endpoint ({kind}).", param="model")
    return model


def _int_param(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise bad_request(f"Invalid '{name}': expected an integer between {low} and {high}.", param=name)
    return value


def _text(value: object) -> str:
    """Message content: a string, null, or a list of parts of which text parts count."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(
            str(p.get("text", "")) for p in value if isinstance(p, dict) and p.get("type") == "text"
        )
    raise bad_request("Invalid type for 'messages[].content'.", param="messages")


def parse_messages(body: dict[str, Any]) -> list[Msg]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise bad_request("'messages' must be a non-empty array.", param="messages")
    out: list[Msg] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or item.get("role") not in _ROLES:
            raise bad_request(f"Invalid value for 'messages[{i}].role'.", param=f"messages[{i}].role")
        out.append(Msg(str(item["role"]), _text(item.get("content")), str(item.get("name") or "")))
    return out


# -- chat ----------------------------------------------------------------------------------------


async def chat_completions(request: web.Request, dialect: Dialect, model_name: object) -> web.StreamResponse:
    config, state = request.app[CONFIG], request.app[STATE]
    body = await json_body(request)
    stream = bool(body.get("stream"))
    route = route_name(dialect, "chat.stream" if stream else "chat")
    state.observe(route, body)
    model = resolve_model(model_name, "chat", dialect, config.retry_after_seconds)
    messages = parse_messages(body)
    temperature = body.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float) or isinstance(temperature, bool) or not 0 <= temperature <= 2
    ):
        raise bad_request("Invalid 'temperature': expected a number between 0 and 2.", param="temperature")
    n = _int_param(body, "n", 1, 8) or 1
    max_tokens = _int_param(body, "max_completion_tokens", 1, 1_000_000)
    if max_tokens is None:
        max_tokens = _int_param(body, "max_tokens", 1, 1_000_000)

    prompt_tokens = count_chat_tokens(messages)
    if prompt_tokens > model.context_window:
        raise bad_request(
            f"This model's maximum context length is {model.context_window} tokens. However, your "
            f"messages resulted in {prompt_tokens} tokens. Please reduce the length of the messages.",
            param="messages",
            code="context_length_exceeded",
        )
    answer = content.chat_answer([(m.role, m.content) for m in messages])
    cut = False
    if max_tokens is not None:
        answer, cut = truncate(answer, max_tokens)
    finish_reason = "length" if cut else "stop"
    completion_tokens = count_tokens(answer) * n
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if stream:
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        return await _stream(
            request,
            dialect,
            model,
            completion_id,
            created,
            answer,
            n,
            finish_reason,
            usage if include_usage else None,
        )
    if model.behaviour == "slow":
        await asyncio.sleep(config.slow_response_seconds)
    choices: list[dict[str, Any]] = []
    for i in range(n):
        choice: dict[str, Any] = {
            "index": i,
            "message": {"role": "assistant", "content": answer, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        if dialect == "azure":
            choice["content_filter_results"] = _AZURE_FILTER
        choices.append(choice)
    payload: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model.id,
        "choices": choices,
        "usage": usage,
        "system_fingerprint": FINGERPRINT,
    }
    if dialect == "azure":
        payload["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": _AZURE_FILTER}]
    return web.json_response(payload, headers={"x-request-id": request_id()})


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def _stream(
    request: web.Request,
    dialect: Dialect,
    model: SimModel,
    completion_id: str,
    created: int,
    answer: str,
    n: int,
    finish_reason: str,
    usage: dict[str, Any] | None,
) -> web.StreamResponse:
    config, state = request.app[CONFIG], request.app[STATE]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
            "x-request-id": request_id(),
        }
    )
    await response.prepare(request)
    state.streams_started += 1
    base: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model.id,
        "system_fingerprint": FINGERPRINT,
    }
    if usage is not None:
        base["usage"] = None  # OpenAI sends an explicit null on every chunk but the last

    def chunk(index: int, delta: dict[str, Any], finish: str | None) -> bytes:
        choice: dict[str, Any] = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        if dialect == "azure" and delta.get("content"):
            choice["content_filter_results"] = _AZURE_FILTER
        return _sse({**base, "choices": [choice]})

    delay = config.slow_chunk_seconds if model.behaviour == "slow" else 0.0
    async with state.streaming():
        if dialect == "azure":
            # Azure's first chunk: no choices, only the prompt's content-filter verdict.
            await response.write(
                _sse(
                    {
                        "choices": [],
                        "created": 0,
                        "id": "",
                        "model": "",
                        "object": "",
                        "prompt_filter_results": [
                            {"prompt_index": 0, "content_filter_results": _AZURE_FILTER}
                        ],
                    }
                )
            )
        for index in range(n):
            await response.write(chunk(index, {"role": "assistant", "content": "", "refusal": None}, None))
            for piece in split_pieces(answer):
                if delay:
                    await asyncio.sleep(delay)
                await response.write(chunk(index, {"content": piece}, None))
            await response.write(chunk(index, {}, finish_reason))
        if usage is not None:
            await response.write(_sse({**base, "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
    return response


# -- embeddings ------------------------------------------------------------------------------


async def embeddings(request: web.Request, dialect: Dialect, model_name: object) -> web.Response:
    config, state = request.app[CONFIG], request.app[STATE]
    body = await json_body(request)
    route = route_name(dialect, "embeddings")
    state.observe(route, body)
    model = resolve_model(model_name, "embedding", dialect, config.retry_after_seconds)
    raw = body.get("input")
    texts: list[str]
    tokens: int
    if isinstance(raw, str):
        texts, tokens = [raw], count_tokens(raw)
    elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        texts, tokens = list(raw), sum(count_tokens(x) for x in raw)
    elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        texts, tokens = [json.dumps(raw)], len(raw)  # one pre-tokenized input
    elif isinstance(raw, list) and raw and all(isinstance(x, list) for x in raw):
        texts, tokens = [json.dumps(x) for x in raw], sum(len(x) for x in raw)
    else:
        raise bad_request("'input' must be a string or a non-empty array.", param="input")
    if any(t == "" for t in texts):
        raise bad_request("'input' cannot contain an empty string.", param="input")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise bad_request("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    dims = _int_param(body, "dimensions", 1, model.dims) or model.dims
    data = []
    for i, text in enumerate(texts):
        vector = content.embedding(model.id, text, model.dims)
        if dims != model.dims:
            vector = content.normalize(vector[:dims])
        encoded: object = content.encode_base64_floats(vector) if encoding == "base64" else vector
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "model": model.id,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        headers={"x-request-id": request_id()},
    )


# -- images ----------------------------------------------------------------------------------

IMAGE_OUTPUT_TOKENS = 16  # per image, simulated


async def images(request: web.Request, dialect: Dialect, model_name: object) -> web.Response:
    config, state = request.app[CONFIG], request.app[STATE]
    body = await json_body(request)
    route = route_name(dialect, "images")
    state.observe(route, body)
    model = resolve_model(model_name or "sim-image", "image", dialect, config.retry_after_seconds)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise bad_request("'prompt' is required.", param="prompt")
    n = _int_param(body, "n", 1, 4) or 1
    size = body.get("size") or "1024x1024"
    match = _SIZE.match(size) if isinstance(size, str) else None
    if match is None or not all(16 <= int(v) <= 2048 for v in match.groups()):
        raise bad_request("'size' must be WIDTHxHEIGHT, each between 16 and 2048.", param="size")
    width, height = int(match.group(1)), int(match.group(2))
    fmt = body.get("response_format") or "b64_json"
    if fmt not in ("b64_json", "url"):
        raise bad_request("'response_format' must be 'url' or 'b64_json'.", param="response_format")
    data = []
    for i in range(n):
        picture = await asyncio.to_thread(content.png, f"{model.id}\0{i}\0{prompt}", width, height)
        if fmt == "url":
            name = hashlib.sha256(picture).hexdigest()[:32]
            state.remember_image(name, picture)
            data.append({"url": f"{request.url.origin()}/v1/sim-files/{name}.png", "revised_prompt": prompt})
        else:
            data.append({"b64_json": base64.b64encode(picture).decode(), "revised_prompt": prompt})
    prompt_tokens = count_tokens(prompt)
    output_tokens = IMAGE_OUTPUT_TOKENS * n
    return web.json_response(
        {
            "created": int(time.time()),
            "data": data,
            "usage": {
                "input_tokens": prompt_tokens,
                "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0},
                "output_tokens": output_tokens,
                "total_tokens": prompt_tokens + output_tokens,
            },
        },
        headers={"x-request-id": request_id()},
    )


async def image_file(request: web.Request) -> web.Response:
    picture = request.app[STATE].images.get(request.match_info["name"])
    if picture is None:
        raise SimError(404, "No such image.", code="not_found")
    return web.Response(body=picture, content_type="image/png")


# -- models ----------------------------------------------------------------------------------


def model_object(model: SimModel) -> dict[str, Any]:
    return {"id": model.id, "object": "model", "created": MODEL_CREATED, "owned_by": "makoto-simulator"}


async def list_models(request: web.Request) -> web.Response:
    request.app[STATE].requests[route_name(dialect_of(request), "models")] += 1
    return web.json_response(
        {"object": "list", "data": [model_object(m) for m in MODELS.values()]},
        headers={"x-request-id": request_id()},
    )


async def get_model(request: web.Request, dialect: Dialect) -> web.Response:
    model = MODELS.get(request.match_info["model"])
    if model is None:
        raise model_not_found(request.match_info["model"], dialect)
    return web.json_response(model_object(model), headers={"x-request-id": request_id()})
