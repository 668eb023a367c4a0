"""The hot OpenAI-dialect calls (chat, streamed chat) straight over aiohttp, one keep-alive
connection pool per tenant client.

Why not the `openai` SDK for these two: measured against a canned local upstream, the SDK cost
~1.5-2.6 ms of CPU per chat and ~6-7 ms per 20-chunk stream (request building through its
option layers, pydantic models of every answer and chunk); aiohttp with one json.loads per
answer/chunk costs a tenth of that. The SDK stays for the cold calls (embeddings, images,
models). What the SDK gave these calls is kept: the same errors (services/llm/adapters/
http_errors.py), its retry policy (429/408/409/5xx and connection errors, max_retries, back-off
honouring retry-after, no retry when the call's deadline leaves no room), and Azure's URL and
api-key header.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Mapping
from typing import Any, NoReturn
from urllib.parse import quote

import aiohttp

from services.common import deadline
from services.common.errors import MakotoError
from services.llm.adapters.http_errors import (
    retry_after_seconds,
    scrub,
    status_error,
    timed_out,
    unreachable,
    unreadable,
)
from services.llm.ports import ProviderConfig

_RETRIED = frozenset({408, 409, 429})
_DONE = object()  # the stream's `data: [DONE]`
_SKIP = object()  # an SSE line that is no `data:` line
# The SDK's back-off: 0.5 s doubling up to 8 s, jittered down by up to a quarter.
_INITIAL_BACKOFF, _MAX_BACKOFF = 0.5, 8.0


class OpenAIHttp:
    def __init__(
        self,
        *,
        provider: str,
        secret: str,
        base_url: str,
        headers: Mapping[str, str],
        max_retries: int,
        timeout_seconds: float,
        azure_api_version: str | None = None,
    ) -> None:
        self._provider = provider
        self._secret = secret
        self._base = base_url.rstrip("/")
        self._headers = {"content-type": "application/json", "accept": "application/json", **headers}
        self._max_retries = max_retries
        self._timeout = timeout_seconds
        self._azure_version = azure_api_version
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(
        cls,
        config: ProviderConfig,
        *,
        provider: str,
        headers: Mapping[str, str],
        azure_api_version: str | None = None,
    ) -> OpenAIHttp:
        return cls(
            provider=provider,
            secret=config.api_key,
            base_url=config.endpoint,
            headers=headers,
            max_retries=config.max_retries,
            timeout_seconds=config.timeout_seconds,
            azure_api_version=azure_api_version,
        )

    def url(self, model: str) -> str:
        if self._azure_version is not None:
            # Azure: the deployment (our `model`) is in the path, the API version in the query.
            return (
                f"{self._base}/openai/deployments/{quote(model, safe='')}/chat/completions"
                f"?api-version={quote(self._azure_version, safe='')}"
            )
        return f"{self._base}/chat/completions"

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                headers=self._headers,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def is_closed(self) -> bool:
        return self._session is not None and self._session.closed

    # -- calls -------------------------------------------------------------------------------

    async def chat(self, model: str, body: dict[str, Any], seconds: float | None) -> Any:
        """POST a chat; the answer's JSON (a dict), or a mapped MakotoError."""
        response = await self._send(model, body, seconds)
        try:
            raw = await response.read()
        except TimeoutError:
            raise timed_out(self._provider) from None
        except aiohttp.ClientError:
            raise unreachable(self._provider) from None
        finally:
            response.release()
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise unreadable(self._provider, model, exc) from None

    async def stream(self, model: str, body: dict[str, Any], seconds: float | None) -> AsyncIterator[Any]:
        """POST a streamed chat; each SSE `data:` event's JSON until [DONE]. Closing the
        generator closes the upstream connection (the provider stops generating)."""
        response = await self._send(model, body, seconds)
        try:
            # Whatever arrived, split into lines here: events often come several to a read, and
            # one readline per line (two per event) cost more than the rest of the parsing.
            rest = b""
            async for piece in response.content.iter_any():
                lines = (rest + piece).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    event = self._event(line, model, response.headers)
                    if event is _DONE:
                        return
                    if event is not _SKIP:
                        yield event
            last = self._event(rest, model, response.headers)  # a last line without a newline
            if last is not _DONE and last is not _SKIP:
                yield last
        except TimeoutError:
            raise timed_out(self._provider) from None
        except aiohttp.ClientError:
            raise unreachable(self._provider) from None
        finally:
            # Not read to the end (cancelled, closed early): drop the connection, do not reuse it.
            response.close()

    def _event(self, line: bytes, model: str, headers: Mapping[str, str]) -> Any:
        """One SSE line: its `data:` JSON, _DONE at `[DONE]`, _SKIP for anything else (blank
        separators, comments, `event:` lines)."""
        if not line.startswith(b"data:"):
            return _SKIP
        data = line[5:].strip()
        if data == b"[DONE]":
            return _DONE
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise unreadable(self._provider, model, exc) from None
        if isinstance(event, dict) and event.get("error"):
            # A failure the provider reported inside the stream.
            self._status_failure(500, model, event, headers)
        return event

    # -- internals ---------------------------------------------------------------------------

    async def _send(self, model: str, body: dict[str, Any], seconds: float | None) -> aiohttp.ClientResponse:
        payload = json.dumps(body, separators=(",", ":")).encode()
        limit = aiohttp.ClientTimeout(total=seconds if seconds is not None else self._timeout)
        retries = self._max_retries if deadline.room_for_retry() else 0
        attempt = 0
        while True:
            try:
                response = await self._client().post(self.url(model), data=payload, timeout=limit)
            except TimeoutError:
                raise timed_out(self._provider) from None
            except aiohttp.ClientError:
                if attempt >= retries:
                    raise unreachable(self._provider) from None
                await asyncio.sleep(self._backoff(attempt, None))
                attempt += 1
                continue
            if response.status < 400:
                return response
            try:
                raw = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                raw = b""
            finally:
                response.release()
            retryable = response.status in _RETRIED or response.status >= 500
            if retryable and attempt < retries and deadline.room_for_retry():
                await asyncio.sleep(self._backoff(attempt, response.headers))
                attempt += 1
                continue
            try:
                error = json.loads(raw) if raw else {}
            except ValueError:
                error = {}
            self._status_failure(response.status, model, error, response.headers)

    @staticmethod
    def _backoff(attempt: int, headers: Mapping[str, str] | None) -> float:
        told = retry_after_seconds(headers, default=-1.0) if headers is not None else -1.0
        if 0 < told <= 60:
            return told
        delay = min(_INITIAL_BACKOFF * 2**attempt, _MAX_BACKOFF)
        return float(delay * (1 - 0.25 * random.random()))  # noqa: S311 -- jitter, not a secret

    def _status_failure(self, status: int, model: str, body: Any, headers: Mapping[str, str]) -> NoReturn:
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        message = error.get("message")
        exc: MakotoError = status_error(
            status,
            provider=self._provider,
            model=model,
            message=scrub(str(message or ""), self._secret),
            headers=headers,
            request_id=headers.get("x-request-id"),
            quota_exhausted=error.get("code") == "insufficient_quota",
        )
        raise exc
