"""One behaviour suite every chat provider adapter passes, against the simulator's dialects
(OpenAI, Azure OpenAI, Anthropic), as the storage contract suites do for storage backends.

A provider without a feature says so in its capabilities; the suite checks the flag and, where
the feature is offered, the behaviour -- never a per-provider copy of a test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web

from services.common.errors import FailedPrecondition, MakotoError, NotFound, ResourceExhausted, Unavailable
from services.llm.adapters.anthropic_provider import build_anthropic
from services.llm.adapters.azure_openai_provider import build_azure_openai
from services.llm.adapters.http_errors import CREDENTIALS_REJECTED
from services.llm.adapters.openai_provider import build_openai
from services.llm.ports import ChatProvider, ChatRequest, Message, ProviderConfig
from services.llm.simulator import bound_port, start_simulator
from services.llm.tokens import count_tokens

KEY = "sk-sim-contract-0123456789"
MESSAGES = [Message("system", "Be brief."), Message("user", "Hello, provider!")]
ECHO = "Echo: Hello, provider!"


@dataclass(frozen=True)
class Dialect:
    name: str  # the provider's name in usage events and answers
    build: Callable[[ProviderConfig], ChatProvider]
    path: str  # appended to the simulator's base URL


DIALECTS = [
    Dialect("openai", build_openai, "/v1"),
    Dialect("azure_openai", build_azure_openai, ""),
    Dialect("anthropic", build_anthropic, ""),
]


@pytest.fixture(scope="module")
async def simulator() -> AsyncIterator[str]:
    runner: web.AppRunner = await start_simulator("127.0.0.1", 0, KEY, retry_after_seconds=1)
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


@pytest.fixture(params=DIALECTS, ids=[d.name for d in DIALECTS])
def dialect(request: pytest.FixtureRequest) -> Dialect:
    value: Dialect = request.param
    return value


@pytest.fixture
async def make(simulator: str, dialect: Dialect) -> AsyncIterator[Callable[..., ChatProvider]]:
    made: list[ChatProvider] = []

    def build(key: str = KEY) -> ChatProvider:
        config = ProviderConfig(
            endpoint=simulator + dialect.path,
            api_key=key,
            api_version="2024-10-21",
            max_retries=0,
            timeout_seconds=10.0,
        )
        provider = dialect.build(config)
        made.append(provider)
        return provider

    yield build
    for provider in made:
        await provider.close()


def chat(model: str = "sim-chat") -> ChatRequest:
    return ChatRequest(model=model, messages=MESSAGES, max_tokens=64)


async def test_names_itself(make: Callable[..., ChatProvider], dialect: Dialect) -> None:
    assert make().name == dialect.name


async def test_chat_answers_with_usage(make: Callable[..., ChatProvider]) -> None:
    result = await make().chat(chat())
    assert [c.content for c in result.choices] == [ECHO]
    assert result.choices[0].role == "assistant"
    assert result.choices[0].finish_reason in ("stop", "end_turn")
    assert result.model == "sim-chat" and result.id
    assert result.usage is not None
    assert result.usage.completion_tokens == count_tokens(ECHO)
    assert result.usage.prompt_tokens > 0


async def test_stream_says_what_chat_says_then_usage(make: Callable[..., ChatProvider]) -> None:
    provider = make()
    text: list[str] = []
    usage = None
    async for delta in provider.stream_chat(chat()):
        if delta.usage is not None:
            usage = delta.usage
        text.append(delta.text)
    assert "".join(text) == ECHO
    assert usage is not None and usage.completion_tokens == count_tokens(ECHO)


async def test_stream_closed_early_stops_cleanly(make: Callable[..., ChatProvider]) -> None:
    provider = make()
    deltas = provider.stream_chat(chat("sim-slow"))
    first = await anext(deltas)
    assert first.id or first.text
    await deltas.aclose()  # the client went away: the upstream stream is closed, nothing raised
    assert (await provider.chat(chat())).choices[0].content == ECHO  # the client still works


async def test_capabilities_match_behaviour(make: Callable[..., ChatProvider]) -> None:
    provider = make()
    caps = provider.capabilities
    assert caps.chat
    if caps.list_models:
        assert "sim-chat" in await provider.list_models()
    if caps.embeddings:
        result = await provider.embed("sim-embed", ["a", "b c"])
        assert [len(v) for v in result.vectors] == [16, 16]
    if caps.images:
        images = await provider.generate_image("sim-image", "a red gate")
        assert len(images.images) == 1


async def test_rejected_key_is_credentials_rejected(make: Callable[..., ChatProvider]) -> None:
    with pytest.raises(FailedPrecondition) as err:
        await make("sk-wrong").chat(chat())
    assert err.value.reason == CREDENTIALS_REJECTED
    assert "sk-wrong" not in str(err.value)


@pytest.mark.parametrize(
    ("model", "error"),
    [("sim-ratelimit", ResourceExhausted), ("sim-error", Unavailable), ("no-such-model", NotFound)],
)
async def test_provider_failures_map_to_the_mesh_errors(
    make: Callable[..., ChatProvider], model: str, error: type[MakotoError]
) -> None:
    with pytest.raises(error):
        await make().chat(chat(model))
    with pytest.raises(error):
        async for _ in make().stream_chat(chat(model)):
            pass
