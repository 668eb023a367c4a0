"""The simulator's configuration and what it observed (tests read the latter)."""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class SimulatorConfig:
    api_key: str = field(repr=False)
    # Retry-After sent by sim-ratelimit.
    retry_after_seconds: int = 1
    # sim-slow: delay before a non-streamed answer, and between streamed chunks.
    slow_response_seconds: float = 2.0
    slow_chunk_seconds: float = 0.05


@dataclass
class SimulatorState:
    # Requests per route name ("chat", "chat.stream", "embeddings", "images", "models"; the
    # Azure routes' names start with "azure.").
    requests: Counter[str] = field(default_factory=Counter)
    streams_started: int = 0
    streams_completed: int = 0
    # Streams the client went away from before [DONE].
    streams_aborted: int = 0
    # The last JSON body per route name (lets tests see what an SDK actually sent).
    last_body: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Images served by URL (response_format=url), newest last, bounded.
    images: OrderedDict[str, bytes] = field(default_factory=OrderedDict)

    def observe(self, route: str, body: dict[str, Any]) -> None:
        """Count a request on its route and keep its body for tests to read."""
        self.requests[route] += 1
        self.last_body[route] = body

    @asynccontextmanager
    async def streaming(self) -> AsyncIterator[None]:
        """Counts a stream's end: completed, or aborted when the client went away (the reset is
        swallowed: the handler then returns what it wrote)."""
        try:
            yield
        except ConnectionResetError:
            self.streams_aborted += 1
        except asyncio.CancelledError:
            self.streams_aborted += 1
            raise
        else:
            self.streams_completed += 1

    def remember_image(self, name: str, data: bytes, limit: int = 64) -> None:
        self.images[name] = data
        while len(self.images) > limit:
            self.images.popitem(last=False)


CONFIG = web.AppKey("simulator_config", SimulatorConfig)
STATE = web.AppKey("simulator_state", SimulatorState)
