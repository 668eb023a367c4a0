"""An HTTP proxy in front of an emulator that can answer like the real service where the
emulator never does: throttling (DynamoDB throughput exceptions, Cosmos 429 with
x-ms-retry-after-ms), rejected credentials, partially processed batches, Cosmos's 404 for a
missing item. Everything else passes through to the emulator untouched, so the SDKs talk to a
real server; only the response under test is shaped by hand. No SDK method is mocked.

A hook sees each request and may answer it itself, forward a changed body, or pass (None).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.support import free_port

Reply = tuple[int, dict[str, str], bytes]
Forward = Callable[[bytes], Awaitable[Reply]]
Hook = Callable[[web.Request, bytes, Forward], Awaitable[Reply | None]]

_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive", "host"}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FaultProxy:
    upstream: str
    hooks: list[Hook] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FaultProxy:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request, body: bytes) -> Reply:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body
        ) as response:
            payload = await response.read()
            out = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
            return response.status, out, payload

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path, dict(request.headers), body))

        async def forward(new_body: bytes) -> Reply:
            return await self._forward(request, new_body)

        reply: Reply | None = None
        for hook in self.hooks:
            reply = await hook(request, body, forward)
            if reply is not None:
                break
        if reply is None:
            reply = await forward(body)
        status, headers, payload = reply
        return web.Response(status=status, headers=headers, body=payload)


# -- DynamoDB (JSON 1.0 protocol: the operation is in X-Amz-Target) ---------------------------


def dynamodb_operation(request: web.Request) -> str:
    return request.headers.get("X-Amz-Target", "").rpartition(".")[2]


def dynamodb_error(code: str, message: str = "", status: int = 400) -> Reply:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})
    return status, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code}, body.encode()


def dynamodb_reply(data: dict[str, Any]) -> Reply:
    return 200, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(data).encode()


# -- Cosmos DB ---------------------------------------------------------------------------------


def cosmos_error(status: int, code: str, message: str, **headers: str) -> Reply:
    body = json.dumps({"code": code, "message": message}).encode()
    return status, {"Content-Type": "application/json", **headers}, body
