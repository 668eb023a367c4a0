"""Monthly LLM budgets and shared tpm through a real LLMService, the simulator and the machine's
Redis (a private key prefix per run): refused before a call, ended mid-stream, alerts at 80/100 %."""

from __future__ import annotations

from decimal import Decimal

import grpc
import pytest
from makoto.llm.v1 import llm_pb2

from services.common.limits.model import Limits
from services.common.usage import LLM_BUDGET_ALERTS, LLM_COMPLETION_TOKENS, LLM_PROMPT_TOKENS
from services.llm.tokens import count_tokens
from tests.unit.llm.conftest import LlmHarness
from tests.unit.llm.support import error_info, llm_binding

pytestmark = pytest.mark.timeout(60)


def chat(tenant: str, text: str, model: str = "") -> llm_pb2.CreateChatCompletionRequest:
    return llm_pb2.CreateChatCompletionRequest(
        tenant_id=tenant, model=model, messages=[llm_pb2.ChatMessage(role="user", content=text)]
    )


def alerts(harness: LlmHarness, tenant: str) -> set[tuple[str, str]]:
    return {
        (e.dimensions["budget"], e.dimensions["threshold"])
        for e in harness.recorder.events
        if e.tenant_id == tenant and e.meter == LLM_BUDGET_ALERTS
    }


async def test_a_call_over_the_budget_is_refused_before_the_provider(harness: LlmHarness) -> None:
    harness.tenants.put("budget-spent", llm_binding())
    harness.limits.table["budget-spent"] = Limits(llm_monthly_tokens=1000)
    harness.limits.tokens_used["budget-spent"] = 995  # MeteringService's durable view
    sent = harness.sim.requests["chat"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.CreateChatCompletion(
            chat("budget-spent", "hello"), metadata=harness.md("budget-spent")
        )
    err = caught.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, retry = error_info(err)
    assert info is not None and info.reason == "LLM_BUDGET_EXCEEDED"
    assert retry is None  # retrying this month cannot help
    assert harness.sim.requests["chat"] == sent  # never reached the provider
    assert harness.recorder.tokens("budget-spent") == []  # nothing billed
    # Another tenant is untouched.
    await harness.stub.CreateChatCompletion(chat("acme", "hi"), metadata=harness.md("acme"))


async def test_a_stream_crossing_the_budget_ends_with_an_error_chunk(harness: LlmHarness) -> None:
    tenant = "budget-stream"
    harness.tenants.put(tenant, llm_binding())
    prompt = " ".join(f"w{i}" for i in range(120))
    prompt_tokens = 0
    # 126 prompt tokens + 122 streamed would be 248: room for about 74 of them.
    harness.limits.table[tenant] = Limits(llm_monthly_tokens=200)
    harness.limits.tokens_used[tenant] = 0
    chunks: list[llm_pb2.ChatCompletionChunk] = []
    call = harness.stub.StreamChatCompletion(chat(tenant, prompt, "chat"), metadata=harness.md(tenant))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for chunk in call:
            chunks.append(chunk)
    err = caught.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(err)[0].reason == "LLM_BUDGET_EXCEEDED"  # type: ignore[union-attr]
    last = chunks[-1]
    assert last.HasField("error") and last.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    delivered = "".join(c.delta for c in chunks)
    full = f"Echo: {prompt}"
    assert full.startswith(delivered) and len(delivered) < len(full)  # ended mid-way
    prompt_tokens = harness.recorder.total(tenant, LLM_PROMPT_TOKENS)
    completion = harness.recorder.total(tenant, LLM_COMPLETION_TOKENS)
    # The delivered part is what is metered, and it overshot the budget by at most one chunk.
    assert completion == count_tokens(delivered)
    last_chunk_tokens = count_tokens(chunks[-2].delta)
    assert 200 < prompt_tokens + completion <= 200 + last_chunk_tokens
    assert alerts(harness, tenant) >= {("tokens", "80"), ("tokens", "100")}
    # The next call is refused up front.
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await harness.stub.CreateChatCompletion(chat(tenant, "hi"), metadata=harness.md(tenant))
    assert again.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_money_budget_and_threshold_alerts(harness: LlmHarness) -> None:
    tenant = "budget-money"
    harness.tenants.put(tenant, llm_binding())
    # 0.00002 per token: 0.01 buys 500 tokens.
    harness.limits.table[tenant] = Limits(llm_monthly_spend=Decimal("0.01"))
    harness.limits.tokens_used[tenant] = 390  # 78 % spent already
    await harness.stub.CreateChatCompletion(chat(tenant, "a few words here"), metadata=harness.md(tenant))
    assert alerts(harness, tenant) == {("spend", "80")}
    # ~410 of 500 spent: a 100-word prompt would cross 100 % (the alert fires, the call is refused).
    long_prompt = " ".join(["word"] * 100)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await harness.stub.CreateChatCompletion(chat(tenant, long_prompt), metadata=harness.md(tenant))
    assert error_info(caught.value)[0].reason == "LLM_BUDGET_EXCEEDED"  # type: ignore[union-attr]
    assert ("spend", "100") in alerts(harness, tenant)
