"""An HTTP fault proxy for the object-store fault suite: it stands between an adapter (with its
unmodified SDK) and the real emulator and, per request, either forwards the request verbatim
(headers included, so signatures stay valid) or answers what the backend itself answers when it
throttles or rejects credentials (the response shapes come from each backend's FaultRig).

moto never throttles or checks credentials and Azurite never throttles: this is how those
answers reach the adapters anyway, with the rest of the conversation real.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

Answer = Callable[[], web.Response]
# Hop-by-hop and length headers aiohttp sets itself on the forwarded request / our response.
_SKIP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"})


class HttpFaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")  # http://127.0.0.1:<emulator port>
        self.port = 0
        self.requests: list[str] = []  # "METHOD path" of every request seen, answered or forwarded
        self._answer: Answer | None = None
        self._times = 0  # how many more requests get the answer (-1: all)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def answer(self, response: Answer, times: int = -1) -> None:
        """The next `times` requests (every one, with -1) get `response` instead of the emulator."""
        self._answer, self._times = response, times

    def forward(self) -> None:
        self._answer, self._times = None, 0

    async def start(self) -> HttpFaultProxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        body = await request.read()
        if self._answer is not None and self._times != 0:
            self._times -= 1 if self._times > 0 else 0
            return self._answer()
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
            # Shared Key signs Content-Type: never add one the client did not send.
            skip_auto_headers=("Content-Type",),
        ) as resp:
            payload = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _SKIP}
            if request.method == "HEAD" and "Content-Length" in resp.headers:
                # A HEAD answer has no body but describes one: keep its length.
                out["Content-Length"] = resp.headers["Content-Length"]
            return web.Response(status=resp.status, headers=out, body=payload)


@contextlib.asynccontextmanager
async def http_fault_proxy(upstream: str) -> AsyncIterator[HttpFaultProxy]:
    proxy = await HttpFaultProxy(upstream).start()
    try:
        yield proxy
    finally:
        await proxy.stop()
