"""LLMService servicer: protobuf <-> domain, aliases, rate limits, usage. Provider specifics
live in the adapters; per-tenant clients come from the registry."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import grpc
from google.protobuf import timestamp_pb2
from makoto.llm.v1 import llm_pb2, llm_pb2_grpc

from services.common import deadline, paging
from services.common.breaker import breakers
from services.common.errors import FailedPrecondition
from services.llm.adapters.http_errors import CREDENTIALS_REJECTED
from services.llm.aliases import ALIASES, resolve_model
from services.llm.config import LlmSettings
from services.llm.limits import BudgetExceeded, Charge, LlmLimits
from services.llm.metering import UsageMeter
from services.llm.ports import ChatRequest, Message, Usage
from services.llm.registry import ProviderRegistry, TenantLlm
from services.llm.tokens import count_chat_tokens, count_tokens

T = TypeVar("T")


def _usage_pb(usage: Usage) -> llm_pb2.TokenUsage:
    return llm_pb2.TokenUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def _messages(messages: Sequence[llm_pb2.ChatMessage]) -> list[Message]:
    return [Message(role=m.role, content=m.content, name=m.name) for m in messages]


class LlmServicer(llm_pb2_grpc.LLMServiceServicer):
    def __init__(
        self, registry: ProviderRegistry, meter: UsageMeter, options: LlmSettings, limits: LlmLimits
    ) -> None:
        self._registry = registry
        self._meter = meter
        self._options = options
        self._limits = limits
        self._background: set[asyncio.Task[None]] = set()

    async def drain(self) -> None:
        """On shutdown, before the recorder closes: let every usage record still running finish."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # -- helpers ---------------------------------------------------------------------------------

    def _request_timeout(self, context: grpc.aio.ServicerContext) -> float:
        """The configured ceiling, or what the call's deadline leaves if that is shorter (the
        interceptor set it: the client's grpc-timeout, capped, or the service default)."""
        return deadline.timeout(self._options.timeout_seconds)

    @contextlib.asynccontextmanager
    async def _provider_call(self, tenant: TenantLlm) -> AsyncIterator[None]:
        # One breaker per tenant and provider endpoint: a dead provider fails fast for its tenant.
        endpoint = tenant.binding.endpoint or "default"
        provider = tenant.provider.name
        try:
            async with breakers.guard(
                f"{tenant.tenant_id}|llm|{provider}|{endpoint}", f"LLM provider {provider}"
            ):
                yield
        except FailedPrecondition as err:
            if err.reason == CREDENTIALS_REJECTED:
                # The key may have been rotated in the secret store: rebuild on the next call.
                self._registry.invalidate(tenant)
            raise

    async def _reserve(self, tenant: TenantLlm, estimate: int) -> Charge:
        return await self._limits.reserve(
            tenant.tenant_id, estimate, rpm=tenant.binding.rpm_limit, tpm=tenant.binding.tpm_limit
        )

    async def _charged(self, tenant: TenantLlm, charge: Charge, call: Callable[[], Awaitable[T]]) -> T:
        """The provider call a reservation was made for; nothing charged when it fails."""
        try:
            async with self._provider_call(tenant):
                return await call()
        except BaseException:
            await self._settle(tenant, charge, None)
            raise

    async def _settle(self, tenant: TenantLlm, charge: Charge, usage: Usage | None) -> None:
        # Shielded like metering: a cancelled caller must not leave the budget half-charged.
        prompt, completion = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        await asyncio.shield(self._limits.settle(tenant.tenant_id, charge, prompt, completion))

    async def _record(self, tenant: TenantLlm, model: str, usage: Usage, *, estimated: bool = False) -> None:
        # Tasks: a caller that cancels mid-stream must not cancel the billing of it. Not awaited
        # to the end: one loop step puts the events in the spool's queue ahead of the call's
        # api_calls event, which the interceptor records (and waits for) before the answer goes
        # out, so both commit in one spool write (or the tokens in an earlier one).
        tasks = self._meter.start(
            tenant.tenant_id, model=model, provider=tenant.provider.name, usage=usage, estimated=estimated
        )
        for task in tasks:
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if tasks:
            await asyncio.sleep(0)

    def _chat_request(
        self,
        request: llm_pb2.CreateChatCompletionRequest,
        tenant: TenantLlm,
        context: grpc.aio.ServicerContext,
    ) -> ChatRequest:
        return ChatRequest(
            model=resolve_model(tenant.binding, request.model, "chat"),
            messages=_messages(request.messages),
            temperature=request.temperature if request.HasField("temperature") else None,
            max_tokens=request.max_tokens if request.HasField("max_tokens") else None,
            user=request.user,
            request_timeout=self._request_timeout(context),
        )

    # -- RPCs ------------------------------------------------------------------------------------

    async def CreateChatCompletion(
        self, request: llm_pb2.CreateChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.ChatCompletion:
        async with self._registry.lease(request.tenant_id) as tenant:
            chat = self._chat_request(request, tenant, context)
            estimate = count_chat_tokens(chat.messages)
            charge = await self._reserve(tenant, estimate)
            result = await self._charged(tenant, charge, lambda: tenant.provider.chat(chat))
            usage = result.usage or Usage(estimate, sum(count_tokens(c.content) for c in result.choices))
            await self._settle(tenant, charge, usage)
            await self._record(tenant, chat.model, usage, estimated=result.usage is None)
            answer = llm_pb2.ChatCompletion(
                id=result.id,
                model=result.model,
                provider=tenant.provider.name,
                choices=[
                    llm_pb2.ChatChoice(
                        index=c.index,
                        message=llm_pb2.ChatMessage(role=c.role, content=c.content),
                        finish_reason=c.finish_reason,
                    )
                    for c in result.choices
                ],
                usage=_usage_pb(usage),
                create_time=timestamp_pb2.Timestamp(seconds=result.created),
            )
            return answer

    async def StreamChatCompletion(
        self, request: llm_pb2.CreateChatCompletionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[llm_pb2.ChatCompletionChunk]:
        async with self._registry.lease(request.tenant_id) as tenant:
            chat = self._chat_request(request, tenant, context)
            estimate = count_chat_tokens(chat.messages)
            charge = await self._reserve(tenant, estimate)
            streamed: list[str] = []
            reported: Usage | None = None
            chunk_id, model = "", chat.model
            try:
                async with (
                    self._provider_call(tenant),
                    contextlib.aclosing(tenant.provider.stream_chat(chat)) as deltas,
                ):
                    async for delta in deltas:
                        chunk_id, model = delta.id or chunk_id, delta.model or model
                        if delta.usage is not None:
                            reported = delta.usage  # sent last, below
                            continue
                        streamed.append(delta.text)
                        yield llm_pb2.ChatCompletionChunk(
                            id=delta.id,
                            model=delta.model,
                            index=delta.index,
                            delta=delta.text,
                            finish_reason=delta.finish_reason,
                        )
                        if await self._limits.add_output(tenant.tenant_id, charge, count_tokens(delta.text)):
                            # The chunk that crossed the budget was the last one sent.
                            break
                if charge.over:
                    exc = BudgetExceeded(
                        "the tenant's monthly LLM budget ran out during this stream", retry_after_seconds=None
                    )
                    yield llm_pb2.ChatCompletionChunk(id=chunk_id, model=model, error=exc.to_status())
                    raise exc
                final = reported or Usage(estimate, count_tokens("".join(streamed)))
                yield llm_pb2.ChatCompletionChunk(id=chunk_id, model=model, usage=_usage_pb(final))
            finally:
                # Bill what the provider reported; a stream cut short (client gone, provider broke
                # mid-way) is billed by the estimate of what was sent. Nothing sent: nothing billed.
                if reported is not None or streamed:
                    usage = reported or Usage(estimate, count_tokens("".join(streamed)))
                    await self._settle(tenant, charge, usage)
                    await self._record(tenant, chat.model, usage, estimated=reported is None)
                else:
                    await self._settle(tenant, charge, None)

    async def CreateEmbeddings(
        self, request: llm_pb2.CreateEmbeddingsRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.CreateEmbeddingsResponse:
        async with self._registry.lease(request.tenant_id) as tenant:
            model = resolve_model(tenant.binding, request.model, "embedding")
            tenant.provider.capabilities.require("embeddings", tenant.provider.name)
            estimate = sum(count_tokens(text) for text in request.input)
            charge = await self._reserve(tenant, estimate)
            result = await self._charged(
                tenant,
                charge,
                lambda: tenant.provider.embed(
                    model, list(request.input), request_timeout=self._request_timeout(context)
                ),
            )
            usage = result.usage or Usage(estimate, 0)
            await self._settle(tenant, charge, usage)
            await self._record(tenant, model, usage, estimated=result.usage is None)
            return llm_pb2.CreateEmbeddingsResponse(
                model=result.model,
                data=[llm_pb2.Embedding(index=i, values=v) for i, v in enumerate(result.vectors)],
                usage=_usage_pb(usage),
            )

    async def GenerateImage(
        self, request: llm_pb2.GenerateImageRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.GenerateImageResponse:
        async with self._registry.lease(request.tenant_id) as tenant:
            model = resolve_model(tenant.binding, request.model, "image")
            tenant.provider.capabilities.require("images", tenant.provider.name)
            estimate = count_tokens(request.prompt)
            charge = await self._reserve(tenant, estimate)
            result = await self._charged(
                tenant,
                charge,
                lambda: tenant.provider.generate_image(
                    model,
                    request.prompt,
                    size=request.size,
                    n=request.n or 1,
                    request_timeout=self._request_timeout(context),
                ),
            )
            # Image models priced per image report no tokens; then there is nothing to meter here
            # (and no token budget is charged).
            await self._settle(tenant, charge, result.usage)
            if result.usage is not None:
                await self._record(tenant, model, result.usage)
            return llm_pb2.GenerateImageResponse(
                images=[
                    llm_pb2.GeneratedImage(b64_json=i.b64_json, url=i.url, revised_prompt=i.revised_prompt)
                    for i in result.images
                ]
            )

    async def ListModels(
        self, request: llm_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.ListModelsResponse:
        async with self._registry.lease(request.tenant_id) as tenant:
            name = tenant.provider.name
            models: list[llm_pb2.Model] = []
            for alias, field in ALIASES.items():
                target = str(getattr(tenant.binding, field))
                if target:
                    models.append(llm_pb2.Model(id=target, alias=alias, provider=name))
            if tenant.provider.capabilities.list_models:
                aliased = {m.id for m in models}
                async with self._provider_call(tenant):
                    listed = await tenant.provider.list_models(request_timeout=self._request_timeout(context))
                models.extend(
                    llm_pb2.Model(id=model_id, provider=name) for model_id in sorted(set(listed) - aliased)
                )
            page, next_token = paging.offset_page(
                models, request.page_size, request.page_token, request.tenant_id, default=paging.MAX_PAGE_SIZE
            )
            return llm_pb2.ListModelsResponse(models=page, next_page_token=next_token)

    async def CountTokens(
        self, request: llm_pb2.CountTokensRequest, context: grpc.aio.ServicerContext
    ) -> llm_pb2.CountTokensResponse:
        # Offline: no provider call, no rate limit; the tenant must still be active.
        await self._registry.require_active(request.tenant_id)
        return llm_pb2.CountTokensResponse(
            prompt_tokens=count_chat_tokens(_messages(request.messages)), method="estimate"
        )
