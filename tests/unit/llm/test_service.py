"""LLMService through a real in-process gRPC server, backed by the real simulator."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
from functools import partial

import grpc
import pytest
from makoto.llm.v1 import llm_pb2, llm_pb2_grpc
from makoto.tenant.v1 import tenant_pb2

from services.common.errors import status_details
from services.common.usage import LLM_COMPLETION_TOKENS, LLM_PROMPT_TOKENS
from services.llm.config import LlmSettings
from services.llm.server import build
from services.llm.simulator import bound_port, simulator_state, start_simulator
from services.llm.tokens import count_tokens
from tests.support import bearer, direct_channel, free_port, make_settings, running_server
from tests.unit.llm.conftest import SIM_KEY, LlmHarness
from tests.unit.llm.support import MemoryRecorder, error_info, llm_binding

pytestmark = pytest.mark.timeout(60)


def user(text: str) -> llm_pb2.ChatMessage:
    return llm_pb2.ChatMessage(role="user", content=text)


def chat_request(tenant: str, text: str, **kw: object) -> llm_pb2.CreateChatCompletionRequest:
    return llm_pb2.CreateChatCompletionRequest(tenant_id=tenant, messages=[user(text)], **kw)  # type: ignore[arg-type]


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


# -- chat ------------------------------------------------------------------------------------


async def test_chat_plain_answers_and_meters_provider_usage(harness: LlmHarness) -> None:
    harness.tenants.put("chat-plain", llm_binding())
    request = llm_pb2.CreateChatCompletionRequest(
        tenant_id="chat-plain",
        messages=[llm_pb2.ChatMessage(role="system", content="Be brief."), user("Hello there, simulator!")],
        temperature=0.2,
        user="end-user-7",
    )
    answer = await harness.stub.CreateChatCompletion(request, metadata=harness.md("chat-plain"))

    assert answer.provider == "openai"
    assert answer.model == "sim-chat"  # "" resolved through the chat alias
    assert answer.choices[0].message.content == "Echo: Hello there, simulator!"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.create_time.seconds > 0
    count = await harness.stub.CountTokens(
        llm_pb2.CountTokensRequest(tenant_id="chat-plain", messages=request.messages),
        metadata=harness.md("chat-plain"),
    )
    assert count.method == "estimate"
    assert answer.usage.prompt_tokens == count.prompt_tokens  # the simulator counts the same way
    assert answer.usage.completion_tokens == count_tokens("Echo: Hello there, simulator!") == 7
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 7
    # What the SDK actually sent upstream.
    sent = harness.sim.last_body["chat"]
    assert sent["model"] == "sim-chat" and sent["temperature"] == 0.2 and sent["user"] == "end-user-7"

    events = harness.recorder.tokens("chat-plain")
    assert {(e.meter, e.value) for e in events} == {
        (LLM_PROMPT_TOKENS, answer.usage.prompt_tokens),
        (LLM_COMPLETION_TOKENS, 7),
    }
    assert all(e.dimensions == {"model": "sim-chat", "provider": "openai"} for e in events)


async def test_max_tokens_cuts_the_answer(harness: LlmHarness) -> None:
    answer = await harness.stub.CreateChatCompletion(
        chat_request("acme", "one two three four five six", max_tokens=3), metadata=harness.md("acme")
    )
    assert answer.choices[0].message.content == "Echo: one"
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 3
    assert harness.sim.last_body["chat"]["max_completion_tokens"] == 3


async def test_stream_deltas_concatenate_and_last_chunk_has_usage(harness: LlmHarness) -> None:
    harness.tenants.put("chat-stream", llm_binding())
    text = "Stream me, please: alpha beta gamma."
    chunks = [
        c
        async for c in harness.stub.StreamChatCompletion(
            chat_request("chat-stream", text, model="chat"), metadata=harness.md("chat-stream")
        )
    ]
    assert "".join(c.delta for c in chunks) == f"Echo: {text}"
    assert len(chunks) > 5  # really streamed, not one blob
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    last = chunks[-1]
    assert last.HasField("usage")
    assert not any(c.HasField("usage") for c in chunks[:-1])
    assert last.usage.completion_tokens == count_tokens(f"Echo: {text}")
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.model == "sim-chat" for c in chunks)
    assert harness.sim.last_body["chat.stream"]["stream_options"] == {"include_usage": True}
    assert harness.recorder.total("chat-stream", LLM_PROMPT_TOKENS) == last.usage.prompt_tokens
    assert harness.recorder.total("chat-stream", LLM_COMPLETION_TOKENS) == last.usage.completion_tokens


async def test_cancelled_stream_closes_upstream_and_bills_the_estimate(harness: LlmHarness) -> None:
    harness.tenants.put("chat-cancel", llm_binding())
    words = " ".join(f"word{i}" for i in range(60))  # sim-slow: 50 ms per token, ~3 s in all
    before = harness.sim.streams_aborted
    call = harness.stub.StreamChatCompletion(
        chat_request("chat-cancel", words, model="sim-slow"), metadata=harness.md("chat-cancel")
    )
    received = ""
    async for chunk in call:
        received += chunk.delta
        if len(received) > 12:
            break
    call.cancel()
    for _ in range(100):
        if harness.sim.streams_aborted > before and harness.recorder.tokens("chat-cancel"):
            break
        await asyncio.sleep(0.05)
    assert harness.sim.streams_aborted == before + 1  # the upstream stream was closed early
    completion = harness.recorder.total("chat-cancel", LLM_COMPLETION_TOKENS)
    assert count_tokens(received) <= completion < count_tokens(f"Echo: {words}")
    assert harness.recorder.total("chat-cancel", LLM_PROMPT_TOKENS) > 60


# -- aliases, embeddings, images, models -------------------------------------------------------


def _norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


async def test_embeddings_aliases_and_determinism(harness: LlmHarness) -> None:
    harness.tenants.put("embed", llm_binding())
    md = harness.md("embed")
    first = await harness.stub.CreateEmbeddings(
        llm_pb2.CreateEmbeddingsRequest(tenant_id="embed", input=["kyoto", "osaka"]), metadata=md
    )
    again = await harness.stub.CreateEmbeddings(
        llm_pb2.CreateEmbeddingsRequest(tenant_id="embed", model="embedding", input=["kyoto"]), metadata=md
    )
    wide = await harness.stub.CreateEmbeddings(
        llm_pb2.CreateEmbeddingsRequest(tenant_id="embed", model="sim-embed-64", input=["kyoto"]), metadata=md
    )
    assert first.model == again.model == "sim-embed"
    assert [e.index for e in first.data] == [0, 1]
    assert len(first.data[0].values) == 16 and len(wide.data[0].values) == 64
    assert list(first.data[0].values) == list(again.data[0].values)
    assert list(first.data[0].values) != list(first.data[1].values)
    assert _norm(list(first.data[1].values)) == pytest.approx(1.0, abs=1e-5)
    assert first.usage.prompt_tokens == 2 and first.usage.completion_tokens == 0
    assert harness.recorder.total("embed", LLM_PROMPT_TOKENS) == 2 + 1 + 1
    assert harness.recorder.total("embed", LLM_COMPLETION_TOKENS) == 0


async def test_image_alias_returns_a_png_of_the_size_asked(harness: LlmHarness) -> None:
    harness.tenants.put("images", llm_binding())
    answer = await harness.stub.GenerateImage(
        llm_pb2.GenerateImageRequest(
            tenant_id="images", model="image", prompt="a red torii gate", size="32x24", n=2
        ),
        metadata=harness.md("images"),
    )
    assert len(answer.images) == 2
    png = base64.b64decode(answer.images[0].b64_json)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (32, 24)
    assert answer.images[0].revised_prompt == "a red torii gate"
    assert harness.sim.last_body["images"]["model"] == "sim-image"
    assert harness.recorder.total("images", LLM_PROMPT_TOKENS) == count_tokens("a red torii gate")


async def test_list_models_marks_aliases(harness: LlmHarness) -> None:
    answer = await harness.stub.ListModels(
        llm_pb2.ListModelsRequest(tenant_id="acme"), metadata=harness.md("acme")
    )
    by_alias = {m.alias: m.id for m in answer.models if m.alias}
    assert by_alias == {"chat": "sim-chat", "embedding": "sim-embed", "image": "sim-image"}
    others = {m.id for m in answer.models if not m.alias}
    assert "sim-embed-64" in others and "sim-chat" not in others
    assert {m.provider for m in answer.models} == {"openai"}


async def test_list_models_pages(harness: LlmHarness) -> None:
    """page_size/page_token (AIP-158): the pages together are the one-shot listing."""
    md = harness.md("acme")
    whole = await harness.stub.ListModels(llm_pb2.ListModelsRequest(tenant_id="acme"), metadata=md)
    assert whole.next_page_token == "" and len(whole.models) > 2
    seen: list[str] = []
    token = ""
    for _ in range(len(whole.models)):
        page = await harness.stub.ListModels(
            llm_pb2.ListModelsRequest(tenant_id="acme", page_size=2, page_token=token), metadata=md
        )
        assert len(page.models) <= 2
        seen += [m.id for m in page.models]
        token = page.next_page_token
        if not token:
            break
    assert seen == [m.id for m in whole.models]


async def test_unset_alias_is_a_failed_precondition(harness: LlmHarness) -> None:
    harness.tenants.put("no-image", llm_binding(image_model=""))
    err = await rpc_error(
        harness.stub.GenerateImage(
            llm_pb2.GenerateImageRequest(tenant_id="no-image", prompt="x"), metadata=harness.md("no-image")
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "'image'" in (err.details() or "")


# -- limits ----------------------------------------------------------------------------------


async def test_rpm_limit_answers_resource_exhausted_with_retry_info(harness: LlmHarness) -> None:
    harness.tenants.put("rpm-two", llm_binding(rpm_limit=2))
    md = harness.md("rpm-two")
    for _ in range(2):
        await harness.stub.CreateChatCompletion(chat_request("rpm-two", "hi"), metadata=md)
    sent = harness.sim.requests["chat"]
    err = await rpc_error(harness.stub.CreateChatCompletion(chat_request("rpm-two", "hi"), metadata=md))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, retry = error_info(err)
    assert info is not None and info.reason == "LLM_RATE_LIMITED"
    assert retry is not None and 0 < retry.retry_delay.ToTimedelta().total_seconds() <= 30
    assert harness.sim.requests["chat"] == sent  # refused before reaching the provider
    # Another tenant is not affected.
    await harness.stub.CreateChatCompletion(chat_request("acme", "hi"), metadata=harness.md("acme"))


async def test_tpm_limit_refuses_a_request_bigger_than_the_limit(harness: LlmHarness) -> None:
    harness.tenants.put("tpm-small", llm_binding(tpm_limit=20))
    md = harness.md("tpm-small")
    big = " ".join(["token"] * 30)
    err = await rpc_error(harness.stub.CreateChatCompletion(chat_request("tpm-small", big), metadata=md))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(err)[0].reason == "LLM_TPM_LIMIT"  # type: ignore[union-attr]
    # Small ones pass until the minute's tokens are spent: each "hi" reserves its 7-token prompt
    # estimate and then settles to the 10 tokens the provider reported, so two fit in 20.
    for _ in range(2):
        await harness.stub.CreateChatCompletion(chat_request("tpm-small", "hi"), metadata=md)
    err = await rpc_error(harness.stub.CreateChatCompletion(chat_request("tpm-small", "hi"), metadata=md))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _, retry = error_info(err)
    assert retry is not None and retry.retry_delay.ToTimedelta().total_seconds() > 0


# -- provider errors -------------------------------------------------------------------------


async def test_provider_429_becomes_resource_exhausted_after_retries(harness: LlmHarness) -> None:
    before = harness.sim.requests["chat"]
    err = await rpc_error(
        harness.stub.CreateChatCompletion(
            chat_request("acme", "hi", model="sim-ratelimit"), metadata=harness.md("acme")
        )
    )
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, retry = error_info(err)
    assert info is not None and info.reason == "LLM_PROVIDER_RATE_LIMITED"
    assert retry is not None and retry.retry_delay.ToTimedelta().total_seconds() == 1.0  # Retry-After
    assert harness.sim.requests["chat"] == before + 2  # max_retries=1: the SDK retried once


async def test_provider_500_becomes_unavailable(harness: LlmHarness) -> None:
    err = await rpc_error(
        harness.stub.CreateChatCompletion(
            chat_request("acme", "hi", model="sim-error"), metadata=harness.md("acme")
        )
    )
    assert err.code() == grpc.StatusCode.UNAVAILABLE


async def test_unknown_model_is_not_found(harness: LlmHarness) -> None:
    err = await rpc_error(
        harness.stub.CreateChatCompletion(
            chat_request("acme", "hi", model="gpt-nope"), metadata=harness.md("acme")
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "gpt-nope" in (err.details() or "")


async def test_context_overflow_is_invalid_argument(harness: LlmHarness) -> None:
    err = await rpc_error(
        harness.stub.CreateChatCompletion(chat_request("acme", "a " * 9000), metadata=harness.md("acme"))
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "maximum context length" in (err.details() or "")


async def test_stopped_provider_is_unavailable(harness: LlmHarness) -> None:
    runner = await start_simulator("127.0.0.1", 0, SIM_KEY)
    harness.tenants.put("sim-down", llm_binding(endpoint=f"http://127.0.0.1:{bound_port(runner)}/v1"))
    md = harness.md("sim-down")
    try:
        ok = await harness.stub.CreateChatCompletion(chat_request("sim-down", "up?"), metadata=md)
        assert ok.choices[0].message.content == "Echo: up?"
    finally:
        await runner.cleanup()
    err = await rpc_error(harness.stub.CreateChatCompletion(chat_request("sim-down", "up?"), metadata=md))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    err = await rpc_error(
        anext(aiter(harness.stub.StreamChatCompletion(chat_request("sim-down", "up?"), metadata=md)))
    )
    assert err.code() == grpc.StatusCode.UNAVAILABLE


async def test_wrong_key_is_failed_precondition_and_never_echoed(
    harness: LlmHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "sk-wrong-key-55aa77bb99cc"
    monkeypatch.setenv("MAKOTO_TEST_WRONG_LLM_KEY", wrong)
    harness.tenants.put("bad-key", llm_binding(api_key_secret_ref="env://MAKOTO_TEST_WRONG_LLM_KEY"))
    md = harness.md("bad-key")
    for call in (
        harness.stub.CreateChatCompletion(chat_request("bad-key", "hi"), metadata=md),
        anext(aiter(harness.stub.StreamChatCompletion(chat_request("bad-key", "hi"), metadata=md))),
    ):
        err = await rpc_error(call)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.details() == "LLM binding credentials rejected"
        raw = status_details(err).SerializeToString()  # type: ignore[union-attr]
        for leak in (wrong, wrong[-4:]):
            assert leak not in (err.details() or "") and leak.encode() not in raw
    assert not harness.recorder.tokens("bad-key")

    # The binding is fixed (new etag): the next call uses the new key at once.
    harness.tenants.put("bad-key", llm_binding())
    ok = await harness.stub.CreateChatCompletion(chat_request("bad-key", "hi"), metadata=md)
    assert ok.choices[0].message.content == "Echo: hi"


async def test_missing_secret_answers_the_reason_not_the_reference(harness: LlmHarness) -> None:
    harness.tenants.put("no-secret", llm_binding(api_key_secret_ref="local://does-not-exist"))
    err = await rpc_error(
        harness.stub.CreateChatCompletion(chat_request("no-secret", "hi"), metadata=harness.md("no-secret"))
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Members call chat: they learn why, not which secret (the name is in the service log).
    assert "SECRET_NOT_FOUND" in (err.details() or "")
    assert "does-not-exist" not in (err.details() or "")


async def test_anthropic_adapter_against_the_simulators_messages_api(harness: LlmHarness) -> None:
    harness.tenants.put(
        "claude-co", llm_binding(provider=tenant_pb2.LLM_PROVIDER_ANTHROPIC, chat_model="sim-chat")
    )
    md = harness.md("claude-co")
    messages = [llm_pb2.ChatMessage(role="system", content="Be brief."), user("Ohayou gozaimasu")]
    request = llm_pb2.CreateChatCompletionRequest(tenant_id="claude-co", messages=messages, user="u-1")
    plain = await harness.stub.CreateChatCompletion(request, metadata=md)
    assert plain.provider == "anthropic"
    assert plain.choices[0].message.content == "Echo: Ohayou gozaimasu"
    assert plain.choices[0].finish_reason == "stop"  # end_turn, in the mesh's words
    sent = harness.sim.last_body["anthropic.messages"]
    assert sent["system"] == "Be brief." and [m["role"] for m in sent["messages"]] == ["user"]
    assert sent["max_tokens"] == 1024 and sent["metadata"] == {"user_id": "u-1"}
    count = await harness.stub.CountTokens(
        llm_pb2.CountTokensRequest(tenant_id="claude-co", messages=messages), metadata=md
    )
    assert plain.usage.prompt_tokens == count.prompt_tokens

    chunks = [c async for c in harness.stub.StreamChatCompletion(request, metadata=md)]
    assert "".join(c.delta for c in chunks) == "Echo: Ohayou gozaimasu"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    assert chunks[-1].usage.prompt_tokens == count.prompt_tokens
    assert chunks[-1].usage.completion_tokens == count_tokens("Echo: Ohayou gozaimasu")

    cut = await harness.stub.CreateChatCompletion(
        chat_request("claude-co", "a b c d e", max_tokens=2), metadata=md
    )
    assert cut.choices[0].finish_reason == "length" and cut.choices[0].message.content == "Echo:"

    models = await harness.stub.ListModels(llm_pb2.ListModelsRequest(tenant_id="claude-co"), metadata=md)
    assert "sim-chat" in {m.id for m in models.models} and {m.provider for m in models.models} == {
        "anthropic"
    }
    events = harness.recorder.tokens("claude-co")
    assert events and all(e.dimensions == {"model": "sim-chat", "provider": "anthropic"} for e in events)
    assert harness.recorder.total("claude-co", LLM_COMPLETION_TOKENS) == 4 + 4 + 2  # plain, stream, cut


async def test_anthropic_refusals(harness: LlmHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.tenants.put("claude-x", llm_binding(provider=tenant_pb2.LLM_PROVIDER_ANTHROPIC))
    md = harness.md("claude-x")
    err = await rpc_error(
        harness.stub.CreateEmbeddings(
            llm_pb2.CreateEmbeddingsRequest(tenant_id="claude-x", input=["x"]), metadata=md
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "embeddings" in (err.details() or "")
    err = await rpc_error(
        harness.stub.GenerateImage(
            llm_pb2.GenerateImageRequest(tenant_id="claude-x", prompt="x"), metadata=md
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    err = await rpc_error(
        harness.stub.CreateChatCompletion(chat_request("claude-x", "x", temperature=0.7), metadata=md)
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "temperature" in (err.details() or "")
    err = await rpc_error(
        harness.stub.CreateChatCompletion(
            llm_pb2.CreateChatCompletionRequest(
                tenant_id="claude-x", messages=[llm_pb2.ChatMessage(role="tool", content="42")]
            ),
            metadata=md,
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = await rpc_error(
        harness.stub.CreateChatCompletion(chat_request("claude-x", "x", model="claude-nope"), metadata=md)
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(
        harness.stub.CreateChatCompletion(chat_request("claude-x", "x", model="sim-ratelimit"), metadata=md)
    )
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_info(err)[1] is not None

    monkeypatch.setenv("MAKOTO_TEST_ANTHROPIC_KEY", "sk-ant-wrong-31415926")
    harness.tenants.put(
        "claude-x",
        llm_binding(
            provider=tenant_pb2.LLM_PROVIDER_ANTHROPIC, api_key_secret_ref="env://MAKOTO_TEST_ANTHROPIC_KEY"
        ),
    )
    err = await rpc_error(harness.stub.CreateChatCompletion(chat_request("claude-x", "x"), metadata=md))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "31415926" not in (err.details() or "") and "5926" not in (err.details() or "")


async def test_provider_timeout_is_deadline_exceeded(tmp_path: object, harness: LlmHarness) -> None:
    # A server of its own (own home, own signing key) with a short provider timeout, no retries.
    settings = make_settings(tmp_path / "short", simulator_port=harness.settings.simulator_port)  # type: ignore[operator]
    options = LlmSettings(max_retries=0, timeout_seconds=0.3)
    server = partial(
        build, recorder=MemoryRecorder(), tenants=harness.tenants, secrets=harness.secrets, options=options
    )
    async with (
        running_server(server, settings),
        direct_channel(settings.address("llm")) as channel,
    ):
        stub = llm_pb2_grpc.LLMServiceStub(channel)
        err = await rpc_error(
            stub.CreateChatCompletion(
                chat_request("acme", "slow", model="sim-slow"), metadata=bearer(settings, "member", "acme")
            )
        )
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "did not answer in time" in (err.details() or "")  # mapped by the adapter, not gRPC's deadline


# -- tenancy ---------------------------------------------------------------------------------


async def test_token_of_another_tenant_is_permission_denied(harness: LlmHarness) -> None:
    sent = sum(harness.sim.requests.values())
    for call in (
        harness.stub.CreateChatCompletion(chat_request("globex", "hi"), metadata=harness.md("acme")),
        harness.stub.CreateEmbeddings(
            llm_pb2.CreateEmbeddingsRequest(tenant_id="globex", input=["x"]), metadata=harness.md("acme")
        ),
        anext(
            aiter(
                harness.stub.StreamChatCompletion(chat_request("globex", "hi"), metadata=harness.md("acme"))
            )
        ),
    ):
        err = await rpc_error(call)
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert sum(harness.sim.requests.values()) == sent
    assert not harness.recorder.tokens("globex")


async def test_suspended_tenant_is_refused(harness: LlmHarness) -> None:
    harness.tenants.put("paused", llm_binding(), state=tenant_pb2.TENANT_STATE_SUSPENDED)
    err = await rpc_error(
        harness.stub.CreateChatCompletion(chat_request("paused", "hi"), metadata=harness.md("paused"))
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_invalid_request_is_refused_before_the_provider(harness: LlmHarness) -> None:
    sent = sum(harness.sim.requests.values())
    err = await rpc_error(
        harness.stub.CreateChatCompletion(
            llm_pb2.CreateChatCompletionRequest(
                tenant_id="acme", messages=[llm_pb2.ChatMessage(role="wizard")]
            ),
            metadata=harness.md("acme"),
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sum(harness.sim.requests.values()) == sent


# -- Azure OpenAI ----------------------------------------------------------------------------


async def test_azure_adapter_against_the_simulators_azure_paths(harness: LlmHarness) -> None:
    harness.tenants.put(
        "azure-co",
        llm_binding(
            provider=tenant_pb2.LLM_PROVIDER_AZURE_OPENAI,
            endpoint=f"http://{harness.settings.host}:{harness.settings.simulator_port}",
            api_version="2024-10-21",
        ),
    )
    md = harness.md("azure-co")
    before = dict(harness.sim.requests)

    plain = await harness.stub.CreateChatCompletion(
        chat_request("azure-co", "Konnichiwa", max_tokens=50), metadata=md
    )
    assert plain.provider == "azure_openai"
    assert plain.choices[0].message.content == "Echo: Konnichiwa"
    assert harness.sim.last_body["azure.chat"]["max_tokens"] == 50

    chunks = [
        c async for c in harness.stub.StreamChatCompletion(chat_request("azure-co", "Sayonara"), metadata=md)
    ]
    assert "".join(c.delta for c in chunks) == "Echo: Sayonara"
    assert chunks[-1].usage.completion_tokens == 3

    emb = await harness.stub.CreateEmbeddings(
        llm_pb2.CreateEmbeddingsRequest(tenant_id="azure-co", input=["kyoto"]), metadata=md
    )
    assert len(emb.data[0].values) == 16
    img = await harness.stub.GenerateImage(
        llm_pb2.GenerateImageRequest(tenant_id="azure-co", prompt="fuji", size="16x16"), metadata=md
    )
    assert base64.b64decode(img.images[0].b64_json)[:4] == b"\x89PNG"
    models = await harness.stub.ListModels(llm_pb2.ListModelsRequest(tenant_id="azure-co"), metadata=md)
    assert {m.provider for m in models.models} == {"azure_openai"}

    for route in ("azure.chat", "azure.chat.stream", "azure.embeddings", "azure.images", "azure.models"):
        assert harness.sim.requests[route] == before.get(route, 0) + 1, route
    events = harness.recorder.tokens("azure-co")
    assert events and all(e.dimensions["provider"] == "azure_openai" for e in events)
    assert harness.recorder.total("azure-co", LLM_COMPLETION_TOKENS) == 3 + 3 + 16  # chat, stream, image


async def test_azure_wrong_key_is_failed_precondition(
    harness: LlmHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAKOTO_TEST_AZURE_KEY", "azure-wrong-0000")
    harness.tenants.put(
        "azure-bad",
        llm_binding(
            provider=tenant_pb2.LLM_PROVIDER_AZURE_OPENAI, api_key_secret_ref="env://MAKOTO_TEST_AZURE_KEY"
        ),
    )
    err = await rpc_error(
        harness.stub.CreateChatCompletion(chat_request("azure-bad", "hi"), metadata=harness.md("azure-bad"))
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "azure-wrong" not in (err.details() or "")


async def test_simulator_state_helper_matches_runner(harness: LlmHarness) -> None:
    assert simulator_state(harness.simulator) is harness.sim


async def test_free_port_binding_is_unreachable_not_a_hang(harness: LlmHarness) -> None:
    harness.tenants.put("nowhere", llm_binding(endpoint=f"http://127.0.0.1:{free_port()}/v1"))
    err = await rpc_error(
        harness.stub.ListModels(
            llm_pb2.ListModelsRequest(tenant_id="nowhere"), metadata=harness.md("nowhere")
        )
    )
    assert err.code() == grpc.StatusCode.UNAVAILABLE
