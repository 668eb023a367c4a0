"""The Anthropic Messages API dialect: POST /v1/messages (plain and SSE events), GET /v1/models."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import web

from services.llm.simulator import content
from services.llm.simulator.catalog import MODELS
from services.llm.simulator.errors import bad_request
from services.llm.simulator.handlers import Msg, json_body, request_id, resolve_model
from services.llm.simulator.state import CONFIG, STATE
from services.llm.tokens import count_chat_tokens, count_tokens, split_pieces, truncate

_CREATED_AT = "2025-01-01T00:00:00Z"


def _text(value: object, param: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(
            str(b.get("text", "")) for b in value if isinstance(b, dict) and b.get("type") == "text"
        )
    raise bad_request(f"{param}: expected a string or content blocks", param=param)


def _messages(body: dict[str, Any]) -> list[Msg]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise bad_request("messages: at least one message is required", param="messages")
    out: list[Msg] = []
    system = body.get("system")
    if system:
        out.append(Msg("system", _text(system, "system"), ""))
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
            raise bad_request(f"messages.{i}.role: Input should be 'user' or 'assistant'", param="messages")
        out.append(Msg(str(item["role"]), _text(item.get("content"), f"messages.{i}.content"), ""))
    return out


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


async def messages(request: web.Request) -> web.StreamResponse:
    config, state = request.app[CONFIG], request.app[STATE]
    body = await json_body(request)
    stream = bool(body.get("stream"))
    route = "anthropic.messages.stream" if stream else "anthropic.messages"
    state.observe(route, body)
    model = resolve_model(body.get("model"), "chat", "anthropic", config.retry_after_seconds)
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise bad_request("max_tokens: Field required (a positive integer)", param="max_tokens")
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 1):
        raise bad_request("temperature: Input should be between 0 and 1", param="temperature")
    msgs = _messages(body)
    prompt_tokens = count_chat_tokens(msgs)
    if prompt_tokens > model.context_window:
        raise bad_request(f"prompt is too long: {prompt_tokens} tokens > {model.context_window} maximum")
    answer, cut = truncate(content.chat_answer([(m.role, m.content) for m in msgs]), max_tokens)
    stop_reason = "max_tokens" if cut else "end_turn"
    output_tokens = count_tokens(answer)
    message_id = f"msg_{uuid.uuid4().hex[:24]}"
    if not stream:
        if model.behaviour == "slow":
            await asyncio.sleep(config.slow_response_seconds)
        return web.json_response(
            {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model.id,
                "content": [{"type": "text", "text": answer}],
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {"input_tokens": prompt_tokens, "output_tokens": output_tokens},
            },
            headers={"request-id": request_id()},
        )

    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "request-id": request_id()}
    )
    await response.prepare(request)
    state.streams_started += 1
    delay = config.slow_chunk_seconds if model.behaviour == "slow" else 0.0
    start: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model.id,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": 1},
    }
    async with state.streaming():
        await response.write(_event("message_start", {"type": "message_start", "message": start}))
        await response.write(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        await response.write(_event("ping", {"type": "ping"}))
        for piece in split_pieces(answer):
            if delay:
                await asyncio.sleep(delay)
            await response.write(
                _event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
            )
        await response.write(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        await response.write(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            )
        )
        await response.write(_event("message_stop", {"type": "message_stop"}))
        await response.write_eof()
    return response


async def list_models(request: web.Request) -> web.Response:
    request.app[STATE].requests["anthropic.models"] += 1
    data = [
        {"type": "model", "id": m.id, "display_name": m.id, "created_at": _CREATED_AT, "lifecycle": "active"}
        for m in MODELS.values()
    ]
    return web.json_response(
        {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]},
        headers={"request-id": request_id()},
    )
