"""REST through Envoy's transcoder: SSE for streamed chat, raw HttpBody objects byte-exact,
the body size limit, key escaping, and the grpc-status trailer on HTTP/1.1."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

import grpc
import httpx
import pytest
from google.api import httpbody_pb2
from makoto.storage.v1 import objects_pb2, storage_service_pb2_grpc

from services.common.dev_issuer import mint_token
from services.common.identity import Role
from services.mesh.envoy_config import rest_body_limit
from tests.e2e.envoy_spy import SpyMesh

pytestmark = pytest.mark.e2e

API = "/api/v1/tenants/acme"


def auth(spy: SpyMesh) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(spy.settings, role=Role.MEMBER, tenant_id='acme')}"}


async def test_stream_chat_is_server_sent_events(envoy_spy: SpyMesh) -> None:
    body = {"messages": [{"role": "user", "content": "hello"}]}
    events: list[dict[str, object]] = []
    async with httpx.AsyncClient(base_url=envoy_spy.base_url, headers=auth(envoy_spy)) as c:
        async with c.stream("POST", f"{API}/chat/completions:stream", json=body) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: ") :]))
                else:
                    assert line == "", f"unexpected SSE line {line!r}"
    assert [e["delta"] for e in events] == ["Hel", "lo", "!", ""]
    assert events[-1]["finishReason"] == "stop"
    assert events[-1]["usage"] == {"promptTokens": "3", "completionTokens": "3", "totalTokens": "6"}


@pytest.mark.parametrize(
    ("key", "content_type", "size"),
    [
        ("docs/hello.txt", "text/plain; charset=utf-8", 13),
        ("bin/random.bin", "application/octet-stream", 3 * 1024 * 1024 + 7),
        ("img/empty.png", "image/png", 0),
    ],
)
async def test_raw_object_round_trip_is_byte_exact(
    envoy_spy: SpyMesh, key: str, content_type: str, size: int
) -> None:
    data = os.urandom(size)
    async with httpx.AsyncClient(base_url=envoy_spy.base_url, headers=auth(envoy_spy), timeout=30) as c:
        r = await c.put(f"{API}/objects/{key}", content=data, headers={"content-type": content_type})
        assert r.status_code == 200, r.text
        meta = r.json()
        assert meta["key"] == key
        assert int(meta["sizeBytes"]) == size
        assert meta["sha256"] == hashlib.sha256(data).hexdigest()
        r = await c.get(f"{API}/objects/{key}")
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type
    assert r.content == data


async def test_escaped_characters_in_keys_stay_distinct(envoy_spy: SpyMesh) -> None:
    # ALL_CHARACTERS_EXCEPT_SLASH: %23 is '#', %2523 is the three characters '%23'.
    envoy_spy.rec.clear()
    async with httpx.AsyncClient(base_url=envoy_spy.base_url, headers=auth(envoy_spy)) as c:
        for raw, body in (("k%23x", b"hash"), ("k%2523x", b"percent")):
            r = await c.put(f"{API}/objects/{raw}", content=body, headers={"content-type": "text/plain"})
            assert r.status_code == 200, r.text
        assert (await c.get(f"{API}/objects/k%23x")).content == b"hash"
        assert (await c.get(f"{API}/objects/k%2523x")).content == b"percent"
    keys = [c.request.key for c in envoy_spy.rec.calls if c.method == "PutObjectContent"]
    assert keys == ["k#x", "k%23x"]


async def test_request_body_over_the_limit_is_413(envoy_spy: SpyMesh) -> None:
    envoy_spy.rec.clear()
    limit = rest_body_limit(envoy_spy.settings)
    async with httpx.AsyncClient(base_url=envoy_spy.base_url, headers=auth(envoy_spy), timeout=30) as c:
        r = await c.put(
            f"{API}/objects/too-big.bin",
            content=b"\0" * (limit + 1),
            headers={"content-type": "application/octet-stream"},
        )
    assert r.status_code == 413
    assert envoy_spy.rec.calls == []


async def test_stream_error_after_first_byte_arrives_as_grpc_status_trailer(envoy_spy: SpyMesh) -> None:
    # An HTTP/1.1 client has a 200 by the time the service fails; enable_trailers lets Envoy send
    # the failure as a chunked-encoding trailer instead of a silently short body.
    token = auth(envoy_spy)["authorization"]
    host, port = envoy_spy.settings.host, envoy_spy.settings.envoy_port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"GET {API}/objects/fail-midway HTTP/1.1\r\nHost: {host}\r\nAuthorization: {token}\r\n"
            "TE: trailers\r\nConnection: close\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(-1), timeout=10)
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    # The chunked body ends with a zero-size chunk followed by trailers.
    _, _, trailers = rest.rpartition(b"\r\n0\r\n")
    assert b"grpc-status: 14" in trailers.lower(), trailers[:300]


async def test_large_grpc_messages_pass_up_to_the_service_limit(envoy_spy: SpyMesh) -> None:
    # grpc_field_extraction buffers the first message to read its tenant id; the route raises
    # the buffer limit so any message the service accepts also passes Envoy.
    md = tuple(auth(envoy_spy).items())
    size = envoy_spy.settings.max_message_bytes - 1024
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(envoy_spy.grpc_target, options=options) as channel:
        stub = storage_service_pb2_grpc.StorageServiceStub(channel)
        request = objects_pb2.PutObjectContentRequest(
            tenant_id="acme",
            key="big/grpc.bin",
            content=httpbody_pb2.HttpBody(content_type="a/b", data=b"q" * size),
        )
        meta = await stub.PutObjectContent(request, metadata=md, timeout=30)
    assert meta.size_bytes == size
