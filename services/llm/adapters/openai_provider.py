"""OpenAI (and any OpenAI-compatible endpoint, such as the mesh's simulator): chat and streamed
chat over aiohttp directly (services/llm/adapters/openai_http.py says why), everything else
through the official `openai` SDK. The Azure OpenAI adapter is a preset of this one."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any, NoReturn

import httpx2
import openai

from services.llm.adapters.http_errors import unreadable
from services.llm.adapters.openai_errors import map_openai_error
from services.llm.adapters.openai_http import OpenAIHttp
from services.llm.adapters.sdk_provider import SdkProvider
from services.llm.ports import (
    Capabilities,
    ChatDelta,
    ChatRequest,
    ChatResult,
    Choice,
    EmbeddingResult,
    Image,
    ImageResult,
    ProviderConfig,
    Usage,
)

_ERRORS = (openai.OpenAIError, httpx2.HTTPError)


class OpenAIProvider(SdkProvider[openai.AsyncOpenAI]):
    sdk_errors = _ERRORS

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        http: OpenAIHttp,
        secret: str,
        name: str = "openai",
        # OpenAI wants max_completion_tokens (o-series refuse max_tokens); Azure's GA API max_tokens.
        max_tokens_param: str = "max_completion_tokens",
    ) -> None:
        super().__init__(client, secret=secret, name=name)
        self._http = http
        self._max_tokens_param = max_tokens_param

    def __repr__(self) -> str:
        return f"OpenAIProvider(name={self._name!r}, base_url={str(self._client.base_url)!r})"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    def _fail(self, exc: BaseException, model: str) -> NoReturn:
        # `from None`: the SDK's own exception text may carry a masked key; keep it out of chains.
        raise map_openai_error(exc, provider=self._name, model=model, secret=self._secret) from None

    def _chat_body(self, request: ChatRequest) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        for m in request.messages:
            item = {"role": m.role, "content": m.content}
            if m.name:
                item["name"] = m.name
            messages.append(item)
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body[self._max_tokens_param] = request.max_tokens
        if request.user:
            body["user"] = request.user
        return body

    async def chat(self, request: ChatRequest) -> ChatResult:
        answer = await self._http.chat(request.model, self._chat_body(request), request.request_timeout)
        try:
            usage = answer.get("usage")
            return ChatResult(
                id=answer.get("id") or "",
                model=answer.get("model") or request.model,
                choices=[
                    Choice(
                        index=c.get("index", i),
                        content=c["message"].get("content") or "",
                        finish_reason=c.get("finish_reason") or "",
                        role=c["message"].get("role") or "assistant",
                    )
                    for i, c in enumerate(answer["choices"])
                ],
                usage=Usage(usage["prompt_tokens"], usage["completion_tokens"]) if usage else None,
                created=int(answer.get("created") or 0),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise unreadable(self._name, request.model, exc) from None

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatDelta, None]:
        body = {**self._chat_body(request), "stream": True, "stream_options": {"include_usage": True}}
        events = self._http.stream(request.model, body, request.request_timeout)
        try:
            async for chunk in events:
                try:
                    chunk_id, model = chunk.get("id") or "", chunk.get("model") or ""
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        text = delta.get("content") or ""
                        finish = choice.get("finish_reason") or ""
                        if text or finish:
                            yield ChatDelta(
                                id=chunk_id,
                                model=model,
                                index=choice.get("index", 0),
                                text=text,
                                finish_reason=finish,
                            )
                    usage = chunk.get("usage")
                    if usage:
                        yield ChatDelta(
                            id=chunk_id,
                            model=model,
                            usage=Usage(usage["prompt_tokens"], usage["completion_tokens"]),
                        )
                except (KeyError, TypeError, AttributeError) as exc:
                    raise unreadable(self._name, request.model, exc) from None
        finally:
            # Also on cancellation or an early aclose(): stop reading and free the connection.
            await events.aclose()  # type: ignore[attr-defined]

    async def embed(
        self, model: str, inputs: Sequence[str], *, request_timeout: float | None = None
    ) -> EmbeddingResult:
        extra: dict[str, Any] = {"timeout": request_timeout} if request_timeout is not None else {}
        try:
            answer = await self._sdk().embeddings.create(model=model, input=list(inputs), **extra)
        except _ERRORS as exc:
            self._fail(exc, model)
        ordered = sorted(answer.data, key=lambda d: d.index)
        return EmbeddingResult(
            model=answer.model,
            vectors=[list(d.embedding) for d in ordered],
            usage=Usage(answer.usage.prompt_tokens, 0) if answer.usage else None,
        )

    async def generate_image(
        self,
        model: str,
        prompt: str,
        *,
        size: str = "",
        n: int = 1,
        request_timeout: float | None = None,
    ) -> ImageResult:
        # response_format is left to the model: gpt-image models refuse it and always send b64_json.
        args: dict[str, Any] = {"model": model, "prompt": prompt, "n": max(n, 1)}
        if size:
            args["size"] = size
        if request_timeout is not None:
            args["timeout"] = request_timeout
        try:
            answer = await self._sdk().images.generate(**args)
        except _ERRORS as exc:
            self._fail(exc, model)
        usage = answer.usage
        return ImageResult(
            images=[
                Image(b64_json=d.b64_json or "", url=d.url or "", revised_prompt=d.revised_prompt or "")
                for d in answer.data or []
            ],
            usage=Usage(usage.input_tokens, usage.output_tokens) if usage else None,
        )

    async def close(self) -> None:
        await self._http.close()
        await super().close()


def build_openai(config: ProviderConfig) -> OpenAIProvider:
    client = openai.AsyncOpenAI(base_url=config.endpoint, **config.sdk_options())
    headers = {"authorization": f"Bearer {config.api_key}"}
    http = OpenAIHttp.from_config(config, provider="openai", headers=headers)
    return OpenAIProvider(client, http=http, secret=config.api_key)
