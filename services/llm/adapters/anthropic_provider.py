"""Anthropic (Messages API) through the official `anthropic` SDK.

Differences the adapter absorbs: system messages travel in `system`, `max_tokens` is required
(a default is sent), stop reasons have their own names. What Anthropic cannot do is refused
with FAILED_PRECONDITION rather than silently dropped: embeddings, image generation (both in
`capabilities`), and a sampling temperature (the current Messages API and SDK take none).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, NoReturn

import anthropic
import httpx2

from services.common.errors import FailedPrecondition, InvalidArgument
from services.llm.adapters.anthropic_errors import map_anthropic_error
from services.llm.adapters.sdk_provider import SdkProvider
from services.llm.ports import (
    Capabilities,
    ChatDelta,
    ChatRequest,
    ChatResult,
    Choice,
    ProviderConfig,
    Usage,
)

_ERRORS = (anthropic.AnthropicError, httpx2.HTTPError)
# Sent when the caller sets no max_tokens (the Messages API requires one).
DEFAULT_MAX_TOKENS = 1024
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def _finish(reason: str | None) -> str:
    return _FINISH.get(reason or "", reason or "")


class AnthropicProvider(SdkProvider[anthropic.AsyncAnthropic]):
    sdk_errors = _ERRORS

    def __init__(self, client: anthropic.AsyncAnthropic, *, secret: str) -> None:
        super().__init__(client, secret=secret, name="anthropic")

    def __repr__(self) -> str:
        return f"AnthropicProvider(base_url={str(self._client.base_url)!r})"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(embeddings=False, images=False)

    def _fail(self, exc: BaseException, model: str) -> NoReturn:
        raise map_anthropic_error(exc, model=model, secret=self._secret) from None

    @staticmethod
    def _args(request: ChatRequest) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages: list[dict[str, str]] = []
        for m in request.messages:
            if m.role == "system":
                continue
            if m.role not in ("user", "assistant"):
                raise InvalidArgument(
                    f"role {m.role!r} is not supported by the anthropic provider",
                    field_violations=[("messages.role", "anthropic accepts system, user and assistant")],
                )
            messages.append({"role": m.role, "content": m.content})
        if request.temperature is not None:
            raise FailedPrecondition(
                "LLM provider anthropic does not take a temperature; leave it unset",
                reason="CAPABILITY_UNSUPPORTED",
            )
        args: dict[str, Any] = {
            "model": request.model,
            "messages": messages,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        }
        if system:
            args["system"] = system
        if request.user:
            args["metadata"] = {"user_id": request.user}
        if request.request_timeout is not None:
            args["timeout"] = request.request_timeout
        return args

    async def chat(self, request: ChatRequest) -> ChatResult:
        args = self._args(request)
        try:
            answer = await self._sdk().messages.create(**args)
        except _ERRORS as exc:
            self._fail(exc, request.model)
        text = "".join(block.text for block in answer.content if block.type == "text")
        return ChatResult(
            id=answer.id,
            model=answer.model,
            choices=[Choice(index=0, content=text, finish_reason=_finish(answer.stop_reason))],
            usage=Usage(answer.usage.input_tokens, answer.usage.output_tokens),
            created=0,
        )

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatDelta, None]:
        args = self._args(request)
        try:
            stream = await self._sdk().messages.create(**args, stream=True)
        except _ERRORS as exc:
            self._fail(exc, request.model)
        message_id, model = "", request.model
        prompt_tokens = 0
        try:
            async for event in stream:
                if event.type == "message_start":
                    message_id, model = event.message.id, event.message.model
                    prompt_tokens = event.message.usage.input_tokens
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    yield ChatDelta(id=message_id, model=model, text=event.delta.text)
                elif event.type == "message_delta":
                    # Anthropic's usage counters are cumulative; message_delta has the final ones.
                    yield ChatDelta(
                        id=message_id, model=model, finish_reason=_finish(event.delta.stop_reason)
                    )
                    prompt = (
                        event.usage.input_tokens if event.usage.input_tokens is not None else prompt_tokens
                    )
                    yield ChatDelta(
                        id=message_id, model=model, usage=Usage(prompt, event.usage.output_tokens)
                    )
        except _ERRORS as exc:
            self._fail(exc, request.model)
        finally:
            await stream.close()


def build_anthropic(config: ProviderConfig) -> AnthropicProvider:
    client = anthropic.AsyncAnthropic(base_url=config.endpoint, **config.sdk_options())
    return AnthropicProvider(client, secret=config.api_key)
