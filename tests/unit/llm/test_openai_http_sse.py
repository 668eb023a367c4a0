"""OpenAIHttp.stream splits SSE lines itself: events cut across network reads at any byte,
comments and blank lines, a last line without a newline, and [DONE] ending the stream. A real
aiohttp server writes the stream in pieces (each flushed, with a pause) on a free port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from services.common.errors import MakotoError
from services.llm.adapters.openai_http import OpenAIHttp
from tests.support import free_port

pytestmark = pytest.mark.timeout(30)


def _events(n: int) -> bytes:
    out = b": keep-alive comment\n\n"
    for i in range(n):
        out += b"data: " + json.dumps({"i": i, "text": f"piece {i}"}).encode() + b"\n\n"
    return out


async def _serve(pieces: list[bytes]) -> AsyncIterator[str]:
    async def chat(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
            await asyncio.sleep(0.01)  # a separate read on the other side
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def _read(pieces: list[bytes]) -> list[object]:
    async for url in _serve(pieces):
        http = OpenAIHttp(
            provider="openai", secret="sk-x", base_url=url, headers={}, max_retries=0, timeout_seconds=5
        )
        try:
            return [e async for e in http.stream("m", {"stream": True}, 5)]
        finally:
            await http.close()
    raise AssertionError("unreachable")


async def test_events_cut_at_every_few_bytes_arrive_whole() -> None:
    body = _events(5) + b"data: [DONE]\n\n" + b'data: {"after": true}\n\n'
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
    got = await _read(pieces)
    assert got == [{"i": i, "text": f"piece {i}"} for i in range(5)]  # nothing after [DONE]


async def test_a_last_line_without_newline_and_crlf_lines() -> None:
    body = b'data: {"a": 1}\r\n\r\n' + b'data: {"b": 2}'
    assert await _read([body[:10], body[10:]]) == [{"a": 1}, {"b": 2}]


async def test_an_unreadable_event_is_an_error() -> None:
    with pytest.raises(MakotoError):
        await _read([b"data: {not json\n\n"])
