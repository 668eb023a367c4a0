"""The OpenAI-compatible HTTP API of LLMService: POST /v1/chat/completions (whole or SSE),
POST /v1/embeddings, GET /v1/models, so existing OpenAI SDKs work by changing base_url.

Each request becomes one call to this process's own LLMService over a loopback gRPC channel,
carrying the caller's token: the same pipeline as any gRPC or REST call (JWT verified again,
token tenant == request tenant, protovalidate, rate limits, budgets, api_calls and token
metering) -- no second implementation of any of it here. The tenant is the token's; a request
may name it in `OpenAI-Organization` (what the SDKs' `organization` sends), and naming another
tenant is refused (by Envoy, and by the service).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog
from aiohttp import web
from makoto.llm.v1 import llm_pb2, llm_pb2_grpc

from services.common import tls
from services.common.config import MeshSettings
from services.common.errors import MakotoError
from services.common.jwt_verify import JwtVerifier
from services.llm import openai_wire as wire

log = structlog.get_logger("makoto.llm.openai")

ORGANIZATION_HEADER = "OpenAI-Organization"
# Initial metadata of a unary answer passed on as HTTP headers (the tenant's API rate state).
_PASSED_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error(err: wire.WireError) -> web.Response:
    return _json(err.body(), err.status, err.headers)


class OpenAIApi:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        grpc_target: str,
        verifier: JwtVerifier,
        timeout_seconds: float,
        max_body_bytes: int,
        shutdown_grace_seconds: float = 5.0,
        settings: MeshSettings | None = None,
    ) -> None:
        # With settings whose TLS is on: HTTPS with LLMService's certificate and client
        # certificates required (Envoy's), and mTLS to the gRPC port like any service client.
        self._tls = settings if settings is not None and settings.tls else None
        self._grace = shutdown_grace_seconds
        self._host, self._port = host, port
        self._target = grpc_target
        self._verifier = verifier
        self._timeout = timeout_seconds
        self._max_body = max_body_bytes
        self._runner: web.AppRunner | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: llm_pb2_grpc.LLMServiceStub | None = None

    @property
    def port(self) -> int:
        return self._port

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body, middlewares=[self._errors])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        return app

    async def start(self) -> None:
        # One channel (one HTTP/2 connection) to this process's own gRPC port, for every call.
        self._channel = (
            tls.open_channel(self._tls, "llm", identity="llm", address=self._target)
            if self._tls is not None
            else grpc.aio.insecure_channel(self._target)
        )
        self._stub = llm_pb2_grpc.LLMServiceStub(self._channel)
        self._runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=self._grace
        )
        await self._runner.setup()
        ssl_context = tls.server_ssl_context(self._tls, "llm") if self._tls is not None else None
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=ssl_context)
        await site.start()
        log.info("openai-compatible API serving", address=f"{self._host}:{self._port}")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._channel is not None:
            await self._channel.close()

    # -- plumbing ----------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except wire.WireError as err:
            return _error(err)
        except web.HTTPException as exc:
            # aiohttp's own answers (404 unknown path, 405, 413 body too large) in OpenAI's shape.
            type_ = "not_found_error" if exc.status == 404 else "invalid_request_error"
            return _error(wire.WireError(exc.status, exc.reason, type_=type_))

    def _caller(self, request: web.Request) -> tuple[str, tuple[tuple[str, str], ...]]:
        """(tenant, metadata for the gRPC call). The token is checked here to learn the tenant;
        the interceptor checks it (and the tenant) again on the gRPC call."""
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise wire.WireError(
                401, "missing bearer token", type_="authentication_error", code="unauthenticated"
            )
        try:
            principal = self._verifier.verify(header[len("Bearer ") :].strip())
        except MakotoError as exc:
            raise wire.WireError(
                401, str(exc), type_="authentication_error", code="unauthenticated"
            ) from None
        tenant = request.headers.get(ORGANIZATION_HEADER) or principal.tenant_id or ""
        if not tenant:
            raise wire.WireError(
                400,
                f"the token names no tenant: send {ORGANIZATION_HEADER}: <tenant id>",
                code="tenant_missing",
            )
        return tenant, (("authorization", header),)

    @staticmethod
    async def _body(request: web.Request) -> Any:
        try:
            return await request.json(loads=json.loads)
        except ValueError:
            raise wire.bad_request("the request body is not valid JSON") from None

    def _rpc(self) -> llm_pb2_grpc.LLMServiceStub:
        assert self._stub is not None, "start() first"
        return self._stub

    @staticmethod
    async def _rate_headers(call: Any) -> dict[str, str]:
        metadata = await call.initial_metadata()
        return {k: str(v) for k, v in metadata or () if k in _PASSED_HEADERS}

    # -- endpoints ---------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        tenant, metadata = self._caller(request)
        message, stream, include_usage = wire.chat_request(await self._body(request), tenant)
        if stream:
            return await self._chat_stream(request, message, metadata, include_usage)
        call = self._rpc().CreateChatCompletion(message, metadata=metadata, timeout=self._timeout)
        try:
            answer = await call
        except grpc.aio.AioRpcError as exc:
            raise wire.from_grpc(exc.code(), exc.details() or "", exc.trailing_metadata()) from None
        return _json(wire.chat_completion(answer), headers=await self._rate_headers(call))

    async def _chat_stream(
        self,
        request: web.Request,
        message: Any,
        metadata: tuple[tuple[str, str], ...],
        include_usage: bool,
    ) -> web.StreamResponse:
        call = self._rpc().StreamChatCompletion(message, metadata=metadata, timeout=self._timeout)
        try:
            chunks = call.__aiter__()
            try:
                first = await chunks.__anext__()
            except grpc.aio.AioRpcError as exc:
                # Failed before anything was sent: a plain HTTP error, as OpenAI answers.
                raise wire.from_grpc(exc.code(), exc.details() or "", exc.trailing_metadata()) from None
            except StopAsyncIteration:
                first = None
            response = web.StreamResponse(
                headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
            )
            await response.prepare(request)
            events = wire.ChunkWriter(int(time.time()), include_usage)
            chunk = first
            try:
                while chunk is not None:
                    if chunk.HasField("error"):
                        await response.write(wire.error_event(wire.from_status(chunk.error)))
                        return response
                    data = events.event(chunk)
                    if data is not None:
                        await response.write(data)
                    chunk = await anext(chunks, None)
            except grpc.aio.AioRpcError as exc:
                err = wire.from_grpc(exc.code(), exc.details() or "", exc.trailing_metadata())
                await response.write(wire.error_event(err))
                return response
            await response.write(wire.DONE)
            await response.write_eof()
            return response
        finally:
            # The client went away, or we stopped early: end the upstream call at once.
            call.cancel()

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        tenant, metadata = self._caller(request)
        message, encoding = wire.embeddings_request(await self._body(request), tenant)
        call = self._rpc().CreateEmbeddings(message, metadata=metadata, timeout=self._timeout)
        try:
            answer = await call
        except grpc.aio.AioRpcError as exc:
            raise wire.from_grpc(exc.code(), exc.details() or "", exc.trailing_metadata()) from None
        return _json(wire.embeddings(answer, encoding), headers=await self._rate_headers(call))

    async def _models(self, request: web.Request) -> web.StreamResponse:
        tenant, metadata = self._caller(request)
        call = self._rpc().ListModels(
            llm_pb2.ListModelsRequest(tenant_id=tenant), metadata=metadata, timeout=self._timeout
        )
        try:
            answer = await call
        except grpc.aio.AioRpcError as exc:
            raise wire.from_grpc(exc.code(), exc.details() or "", exc.trailing_metadata()) from None
        return _json(wire.models(answer), headers=await self._rate_headers(call))
