"""A fault-injecting HTTP proxy in front of moto_server: moto never throttles or refuses
credentials, so the next N requests can be answered here with a Secrets Manager error in the
service's own wire shape (awsJson1.1: HTTP status + {"__type": ..., "message": ...}); every
other request is forwarded to moto unchanged. Each operation reaching the proxy is counted."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import aiohttp
from aiohttp import web


@dataclass(frozen=True)
class Fault:
    status: int
    error_type: str
    retry_after: float | None = None


THROTTLED = Fault(400, "ThrottlingException")
ACCESS_DENIED = Fault(400, "AccessDeniedException")
UNRECOGNIZED_CLIENT = Fault(400, "UnrecognizedClientException")
INTERNAL = Fault(500, "InternalServiceError")


class FaultyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults: deque[Fault] = deque()
        self.calls: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, count: int, fault: Fault) -> None:
        self.faults.extend([fault] * count)

    async def start(self) -> None:
        self._client = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        self.calls[operation] += 1
        body = await request.read()
        if self.faults:
            fault = self.faults.popleft()
            headers = {"x-amzn-RequestId": "fault-injected"}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return web.json_response(
                {"__type": fault.error_type, "message": "injected by the test proxy"},
                status=fault.status,
                headers=headers,
                content_type="application/x-amz-json-1.1",
            )
        assert self._client is not None
        forward = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._client.request(
            request.method, f"{self.upstream}{request.path_qs}", headers=forward, data=body
        ) as upstream:
            payload = await upstream.read()
            return web.Response(
                body=payload,
                status=upstream.status,
                headers={"Content-Type": upstream.headers.get("Content-Type", "application/x-amz-json-1.1")},
            )
