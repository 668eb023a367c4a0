"""The simulator speaks the OpenAI and Azure OpenAI wire formats: checked with the real `openai`
SDK (and raw HTTP where the SDK hides the wire)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import struct
import subprocess
import sys
from collections.abc import AsyncIterator

import anthropic
import httpx
import openai
import pytest
from aiohttp import web

from services.llm.simulator import bound_port, simulator_state, start_simulator
from services.llm.tokens import count_chat_tokens, count_tokens
from tests.support import free_port

KEY = "sk-sim-wire-0123456789"
MESSAGES = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hello, simulator!"}]


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[web.AppRunner]:
    runner = await start_simulator("127.0.0.1", 0, KEY, retry_after_seconds=1)
    try:
        yield runner
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
def base(sim: web.AppRunner) -> str:
    return f"http://127.0.0.1:{bound_port(sim)}"


@pytest.fixture
def client(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0)


@pytest.fixture
def azure(base: str) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(azure_endpoint=base, api_key=KEY, api_version="2024-10-21", max_retries=0)


def prompt_tokens() -> int:
    class M:
        def __init__(self, d: dict[str, str]) -> None:
            self.role, self.content, self.name = d["role"], d["content"], ""

    return count_chat_tokens([M(m) for m in MESSAGES])


async def test_chat_completion(client: openai.AsyncOpenAI) -> None:
    answer = await client.chat.completions.create(model="sim-chat", messages=MESSAGES)  # type: ignore[arg-type]
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.model == "sim-chat"
    assert answer.choices[0].message.content == "Echo: Hello, simulator!"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == prompt_tokens()
    assert answer.usage.completion_tokens == count_tokens("Echo: Hello, simulator!") == 6
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 6


async def test_chat_max_tokens_and_n(client: openai.AsyncOpenAI) -> None:
    answer = await client.chat.completions.create(
        model="sim-chat",
        messages=[{"role": "user", "content": "a b c d e"}],
        max_completion_tokens=4,
        n=2,
    )
    assert [c.message.content for c in answer.choices] == ["Echo: a b", "Echo: a b"]
    assert {c.finish_reason for c in answer.choices} == {"length"}
    assert answer.usage is not None and answer.usage.completion_tokens == 8


async def test_stream_with_usage_chunk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="sim-chat",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
    assert text == "Echo: Hello, simulator!"
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finishes == ["stop"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (prompt_tokens(), 6)
    assert all(c.usage is None for c in chunks[:-1])


async def test_stream_wire_format_without_usage(base: str) -> None:
    body = {"model": "sim-chat", "messages": MESSAGES, "stream": True}
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "POST", f"{base}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = (await response.aread()).decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e[len("data: ") :]) for e in events[:-1]]
    assert all("usage" not in p for p in payloads)  # not asked for: no usage key at all
    assert all(len(p["choices"]) == 1 for p in payloads)


async def test_embeddings_float_and_base64_agree(client: openai.AsyncOpenAI, base: str) -> None:
    # The SDK asks for base64 by default and decodes it; raw float must give the same vectors.
    sdk = await client.embeddings.create(model="sim-embed", input=["kyoto", "nara"])
    async with httpx.AsyncClient() as http:
        raw = (
            await http.post(
                f"{base}/v1/embeddings",
                json={"model": "sim-embed", "input": ["kyoto", "nara"], "encoding_format": "float"},
                headers={"Authorization": f"Bearer {KEY}"},
            )
        ).json()
    assert [len(d.embedding) for d in sdk.data] == [16, 16]
    for got, want in zip(sdk.data, raw["data"], strict=True):
        assert got.embedding == pytest.approx(want["embedding"], abs=1e-6)
    assert math.sqrt(sum(v * v for v in sdk.data[0].embedding)) == pytest.approx(1.0, abs=1e-5)
    assert sdk.data[0].embedding != sdk.data[1].embedding
    assert sdk.usage.prompt_tokens == 2 and sdk.usage.total_tokens == 2
    again = await client.embeddings.create(model="sim-embed", input="kyoto")
    assert again.data[0].embedding == sdk.data[0].embedding  # deterministic


async def test_embedding_widths_and_dimensions(client: openai.AsyncOpenAI) -> None:
    wide = await client.embeddings.create(model="sim-embed-64", input="x")
    short = await client.embeddings.create(model="sim-embed-64", input="x", dimensions=8)
    assert len(wide.data[0].embedding) == 64 and len(short.data[0].embedding) == 8
    assert math.sqrt(sum(v * v for v in short.data[0].embedding)) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model="sim-embed", input="x", dimensions=17)
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model="sim-chat", input="x")


async def test_models_list_and_retrieve(client: openai.AsyncOpenAI) -> None:
    ids = [m.id async for m in client.models.list()]
    assert {"sim-chat", "sim-embed", "sim-image", "sim-ratelimit", "sim-error"} <= set(ids)
    model = await client.models.retrieve("sim-chat")
    assert model.id == "sim-chat" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("gpt-unknown")
    assert caught.value.code == "model_not_found"


async def test_unknown_model_is_404_model_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-unknown", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_found"


async def test_images_b64_png_and_url(client: openai.AsyncOpenAI) -> None:
    answer = await client.images.generate(model="sim-image", prompt="a torii", size="48x32", n=2)
    assert answer.data is not None and len(answer.data) == 2
    png = base64.b64decode(answer.data[0].b64_json or "")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (48, 32)
    again = await client.images.generate(model="sim-image", prompt="a torii", size="48x32")
    assert again.data is not None and again.data[0].b64_json == answer.data[0].b64_json
    assert answer.usage is not None and (answer.usage.input_tokens, answer.usage.output_tokens) == (2, 32)
    linked = await client.images.generate(
        model="sim-image", prompt="a torii", size="48x32", response_format="url"
    )
    assert linked.data is not None and linked.data[0].url
    async with httpx.AsyncClient() as http:
        fetched = await http.get(linked.data[0].url)
    assert fetched.status_code == 200 and fetched.content == png


async def test_bad_or_missing_key_is_401(base: str) -> None:
    wrong = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="sk-not-the-key-4242", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        await wrong.chat.completions.create(model="sim-chat", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_api_key"
    assert "sk-not-the-key-4242" not in str(caught.value)  # masked, as OpenAI does
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{base}/v1/models")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_ratelimit_model_is_429_with_retry_after(base: str, sim: web.AppRunner) -> None:
    retrying = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=1)
    before = simulator_state(sim).requests["chat"]
    with pytest.raises(openai.RateLimitError) as caught:
        await retrying.chat.completions.create(model="sim-ratelimit", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.code == "rate_limit_exceeded"
    assert simulator_state(sim).requests["chat"] == before + 2  # the SDK honoured it and retried


async def test_error_model_is_500(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="sim-error", messages=MESSAGES)  # type: ignore[arg-type]


async def test_bad_requests_are_400(client: openai.AsyncOpenAI, base: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="sim-chat", messages=[])
    assert caught.value.param == "messages"
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="sim-chat", messages=MESSAGES, temperature=3)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="sim-chat", messages=[{"role": "user", "content": "a " * 9000}]
        )
    assert caught.value.code == "context_length_exceeded"
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base}/v1/chat/completions", content=b"{not json", headers={"Authorization": f"Bearer {KEY}"}
        )
        assert response.status_code == 400 and "error" in response.json()
        response = await http.post(f"{base}/v1/nope", json={}, headers={"Authorization": f"Bearer {KEY}"})
        assert response.status_code == 404 and "Invalid URL" in response.json()["error"]["message"]


# -- Azure OpenAI dialect ----------------------------------------------------------------------


async def test_azure_chat_stream_embeddings_models(
    azure: openai.AsyncAzureOpenAI, sim: web.AppRunner
) -> None:
    answer = await azure.chat.completions.create(model="sim-chat", messages=MESSAGES)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Echo: Hello, simulator!"
    assert simulator_state(sim).requests["azure.chat"] >= 1

    stream = await azure.chat.completions.create(
        model="sim-chat",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices == [] and chunks[0].usage is None  # Azure's prompt-filter chunk
    assert "".join(ch.delta.content or "" for c in chunks for ch in c.choices) == "Echo: Hello, simulator!"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6

    emb = await azure.embeddings.create(model="sim-embed", input="kyoto")
    assert len(emb.data[0].embedding) == 16
    assert [m.id async for m in azure.models.list()]


async def test_azure_auth_deployment_and_api_version(base: str) -> None:
    wrong = openai.AsyncAzureOpenAI(
        azure_endpoint=base, api_key="nope", api_version="2024-10-21", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        await wrong.chat.completions.create(model="sim-chat", messages=MESSAGES)  # type: ignore[arg-type]
    right = openai.AsyncAzureOpenAI(azure_endpoint=base, api_key=KEY, api_version="2024-10-21", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        await right.chat.completions.create(model="no-such-deployment", messages=MESSAGES)  # type: ignore[arg-type]
    assert caught.value.code == "DeploymentNotFound"
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base}/openai/deployments/sim-chat/chat/completions",
            json={"messages": MESSAGES},
            headers={"api-key": KEY},
        )
    assert response.status_code == 404  # no api-version


# -- Anthropic Messages dialect ---------------------------------------------------------------


async def test_anthropic_messages_plain_stream_models(base: str, sim: web.AppRunner) -> None:
    client = anthropic.AsyncAnthropic(base_url=base, api_key=KEY, max_retries=0)
    plain = await client.messages.create(
        model="sim-chat",
        max_tokens=64,
        system="Be kind.",
        messages=[{"role": "user", "content": "Hello, simulator!"}],
    )
    assert plain.type == "message" and plain.id.startswith("msg_")
    assert [b.text for b in plain.content if b.type == "text"] == ["Echo: Hello, simulator!"]
    assert plain.stop_reason == "end_turn"
    assert (plain.usage.input_tokens, plain.usage.output_tokens) == (prompt_tokens(), 6)

    stream = await client.messages.create(
        model="sim-chat",
        max_tokens=64,
        system="Be kind.",
        messages=[{"role": "user", "content": "Hello, simulator!"}],
        stream=True,
    )
    events = [e async for e in stream]
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    text = "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == "Echo: Hello, simulator!"
    final = next(e for e in events if e.type == "message_delta")
    assert final.usage.output_tokens == 6 and final.delta.stop_reason == "end_turn"

    ids = [m.id async for m in client.models.list()]
    assert "sim-chat" in ids
    assert simulator_state(sim).requests["anthropic.models"] >= 1


async def test_anthropic_errors(base: str) -> None:
    wrong = anthropic.AsyncAnthropic(base_url=base, api_key="sk-ant-nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        await wrong.messages.create(
            model="sim-chat", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    client = anthropic.AsyncAnthropic(base_url=base, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as missing:
        await client.messages.create(
            model="claude-none", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert missing.value.type == "not_found_error"
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client.messages.create(
            model="sim-ratelimit", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert limited.value.response.headers["retry-after"] == "1"
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{base}/v1/messages",
            json={"model": "sim-chat", "messages": [{"role": "user", "content": "x"}]},  # no max_tokens
            headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# -- entry point -----------------------------------------------------------------------------


async def test_module_entry_point_serves_and_stops_on_sigterm() -> None:
    port = free_port()
    env = {**os.environ, "MAKOTO_SIMULATOR_API_KEY": KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.llm.simulator", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        for _ in range(100):
            try:
                models = [m.id async for m in client.models.list()]
                break
            except openai.APIConnectionError:
                await asyncio.sleep(0.1)
        assert "sim-chat" in models
    finally:
        process.terminate()
        code = await asyncio.to_thread(process.wait, 10)
        assert process.stderr is not None
        process.stderr.close()
    assert code == 0
