"""A fast mock OpenAI upstream for the LLM gateway benchmarks: a bare asyncio protocol speaking
just enough HTTP/1.1 (keep-alive, Content-Length bodies) to answer POST /v1/chat/completions
(whole, or streamed as 20 SSE chunks with a usage chunk and `data: [DONE]`), POST
/v1/embeddings and GET /v1/models with canned bytes. It costs next to nothing per request, so
what a gateway adds stands out against calling it directly.

    python -m tests.bench.llm_upstream --port 8099
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

STREAM_CHUNKS = 20
MODEL = "mock-chat"


def _http(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _chat_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from the mock upstream."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        }
    ).encode()


def _stream_body() -> bytes:
    """Chunked transfer encoding: one HTTP chunk per SSE event, as real providers send them."""
    events = []
    for i in range(STREAM_CHUNKS):
        delta: dict[str, str] = {"content": f" w{i}"}
        if i == 0:
            delta["role"] = "assistant"
        events.append(
            {
                "id": "chatcmpl-mock",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": MODEL,
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "finish_reason": "stop" if i == STREAM_CHUNKS - 1 else None,
                    }
                ],
            }
        )
    events.append(
        {
            "id": "chatcmpl-mock",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": MODEL,
            "choices": [],
            "usage": {"prompt_tokens": 12, "completion_tokens": STREAM_CHUNKS, "total_tokens": 32},
        }
    )
    out = bytearray()
    for payload in [*(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events), b"data: [DONE]\n\n"]:
        out += f"{len(payload):x}\r\n".encode() + payload + b"\r\n"
    out += b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    return head + bytes(out)


CHAT = _http("200 OK", _chat_body())
STREAM = _stream_body()
EMBEDDINGS = _http(
    "200 OK",
    json.dumps(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.25] * 16}],
            "model": "mock-embed",
            "usage": {"prompt_tokens": 2, "total_tokens": 2},
        }
    ).encode(),
)
MODELS = _http(
    "200 OK",
    json.dumps(
        {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "mock"}]}
    ).encode(),
)
NOT_FOUND = _http("404 Not Found", b'{"error":{"message":"no such path","type":"invalid_request_error"}}')


class MockUpstream(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self._buffer) < end + 4 + length:
                return
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            method, path = head.split(" ", 2)[:2]
            assert self._transport is not None
            self._transport.write(self._answer(method, path.split("?", 1)[0], body))

    @staticmethod
    def _answer(method: str, path: str, body: bytes) -> bytes:
        if method == "POST" and path.endswith("/chat/completions"):
            # A cheap look, not a parse: the benchmark clients send compact or spaced JSON.
            return STREAM if b'"stream": true' in body or b'"stream":true' in body else CHAT
        if method == "POST" and path.endswith("/embeddings"):
            return EMBEDDINGS
        if method == "GET" and path.endswith("/models"):
            return MODELS
        return NOT_FOUND


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockUpstream, host, port, reuse_address=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.llm_upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
