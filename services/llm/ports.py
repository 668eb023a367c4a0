"""Ports of the LLM domain: what LLMService needs from a provider and from the tenant directory.

Adapters (services/llm/adapters/, one module per provider kind) implement ChatProvider and raise
the errors from services.common.errors (their own SDK error mapping), so every provider
answers the same situation with the same code. A provider that lacks a capability says so in
`capabilities`; the service then answers FAILED_PRECONDITION instead of pretending.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypedDict

from makoto.tenant.v1 import directory_pb2

from services.common.errors import FailedPrecondition


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    name: str = ""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ChatRequest:
    model: str
    messages: Sequence[Message]
    temperature: float | None = None
    max_tokens: int | None = None
    user: str = ""
    # Seconds the provider call may take (the caller's remaining deadline, capped by config).
    request_timeout: float | None = None


@dataclass(frozen=True)
class Choice:
    index: int
    content: str
    finish_reason: str
    role: str = "assistant"


@dataclass(frozen=True)
class ChatResult:
    id: str
    model: str
    choices: Sequence[Choice]
    usage: Usage | None
    created: int


@dataclass(frozen=True)
class ChatDelta:
    """One piece of a streamed answer; the last one of a stream carries usage (if reported)."""

    id: str
    model: str
    index: int = 0
    text: str = ""
    finish_reason: str = ""
    usage: Usage | None = None


@dataclass(frozen=True)
class EmbeddingResult:
    model: str
    vectors: Sequence[Sequence[float]]
    usage: Usage | None


@dataclass(frozen=True)
class Image:
    b64_json: str = ""
    url: str = ""
    revised_prompt: str = ""


@dataclass(frozen=True)
class ImageResult:
    images: Sequence[Image]
    usage: Usage | None = None


_WHAT_IT_DOES = {"embeddings": "offer embeddings", "images": "generate images"}


def unsupported(provider: str, capability: Literal["embeddings", "images"]) -> FailedPrecondition:
    """How a missing capability is refused, by the service and by the adapter alike."""
    return FailedPrecondition(
        f"LLM provider {provider} does not {_WHAT_IT_DOES[capability]}", reason="CAPABILITY_UNSUPPORTED"
    )


@dataclass(frozen=True)
class Capabilities:
    chat: bool = True
    embeddings: bool = True
    images: bool = True
    list_models: bool = True

    def require(self, capability: Literal["embeddings", "images"], provider: str) -> None:
        if not getattr(self, capability):
            raise unsupported(provider, capability)


class ChatProvider(Protocol):
    """One tenant's LLM provider client (its endpoint and key are bound in at construction)."""

    # "openai", "azure_openai", "anthropic": what usage events and responses name.
    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    async def chat(self, request: ChatRequest) -> ChatResult: ...

    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatDelta, None]:
        """An async generator of deltas. Closing it early (aclose) closes the upstream stream."""
        ...

    async def embed(
        self, model: str, inputs: Sequence[str], *, request_timeout: float | None = None
    ) -> EmbeddingResult: ...

    async def generate_image(
        self,
        model: str,
        prompt: str,
        *,
        size: str = "",
        n: int = 1,
        request_timeout: float | None = None,
    ) -> ImageResult: ...

    async def list_models(self, *, request_timeout: float | None = None) -> list[str]: ...

    async def close(self) -> None: ...


class TenantResolver(Protocol):
    """Where tenant state and bindings come from (TenantDirectory in production)."""

    async def require_active(self, tenant_id: str) -> directory_pb2.ResolveTenantResponse: ...


@dataclass(frozen=True)
class ProviderConfig:
    """What an adapter factory needs to build one tenant's client."""

    endpoint: str
    api_key: str = field(repr=False)
    api_version: str
    max_retries: int
    timeout_seconds: float

    def sdk_options(self) -> SdkOptions:
        """What every provider SDK client (openai, anthropic) takes from the config alike."""
        return SdkOptions(api_key=self.api_key, max_retries=self.max_retries, timeout=self.timeout_seconds)


class SdkOptions(TypedDict):
    api_key: str
    max_retries: int
    timeout: float
