"""What the SDK-backed chat providers (OpenAI and its Azure preset, Anthropic) share: the client
with deadline-aware retries, secret-safe error mapping, list_models, close, and refusing what a
provider does not offer (its `capabilities` say so too)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, Sequence
from typing import Any, ClassVar, Generic, NoReturn, Protocol, Self, TypeVar

from services.common import deadline
from services.llm.ports import EmbeddingResult, ImageResult, unsupported


class _Model(Protocol):
    @property
    def id(self) -> str: ...


class _Models(Protocol):
    def list(self, *, timeout: Any = ...) -> AsyncIterable[_Model]: ...


class SdkClient(Protocol):
    """The part of `openai.AsyncOpenAI` and `anthropic.AsyncAnthropic` used here."""

    @property
    def models(self) -> _Models: ...

    def with_options(self, *, max_retries: int) -> Self: ...

    async def close(self) -> None: ...

    def is_closed(self) -> bool: ...


C = TypeVar("C", bound=SdkClient)


class SdkProvider(ABC, Generic[C]):
    # What the SDK raises (anything else is a bug, not a provider failure).
    sdk_errors: ClassVar[tuple[type[BaseException], ...]]

    def __init__(self, client: C, *, secret: str, name: str) -> None:
        self._client = client
        self._secret = secret
        self._name = name

    def _sdk(self) -> C:
        """The client; without its own retries when the call's deadline leaves no room for one."""
        return self._client if deadline.room_for_retry() else self._client.with_options(max_retries=0)

    @property
    def name(self) -> str:
        return self._name

    @abstractmethod
    def _fail(self, exc: BaseException, model: str) -> NoReturn:
        """Raise the mesh error for an SDK error (never echoing the secret)."""

    async def embed(
        self, model: str, inputs: Sequence[str], *, request_timeout: float | None = None
    ) -> EmbeddingResult:
        raise unsupported(self._name, "embeddings")

    async def generate_image(
        self,
        model: str,
        prompt: str,
        *,
        size: str = "",
        n: int = 1,
        request_timeout: float | None = None,
    ) -> ImageResult:
        raise unsupported(self._name, "images")

    async def list_models(self, *, request_timeout: float | None = None) -> list[str]:
        extra: dict[str, Any] = {"timeout": request_timeout} if request_timeout is not None else {}
        try:
            return [m.id async for m in self._sdk().models.list(**extra)]
        except self.sdk_errors as exc:
            self._fail(exc, "")

    async def close(self) -> None:
        await self._client.close()

    def is_closed(self) -> bool:
        return self._client.is_closed()
