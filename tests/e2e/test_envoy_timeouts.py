"""Envoy's deadlines and limits, against a real Envoy in front of spy servicers (a spy mesh of its
own with short timeouts): a hung backend answers 504 / DEADLINE_EXCEEDED within the route timeout
over REST and gRPC (no grpc-timeout needed, a longer one is capped), the service is told the
remaining deadline, slow-header and slow-body clients are cut off, and the listener holds no more
than its connection limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

from services.common.config import MeshSettings
from services.common.identity import Role
from tests.e2e.envoy_spy import SpyMesh
from tests.e2e.test_envoy_errors import status_of
from tests.support import bearer, make_settings

pytestmark = pytest.mark.e2e

ROUTE_TIMEOUT_S = 2.0
HEADERS_TIMEOUT_S = 1.5
REQUEST_TIMEOUT_S = 4.0
MAX_CONNECTIONS = 12
# How late a cut-off may come on a busy 2-core box (bounded, not a performance assertion).
SLACK_S = 3.0


def _edge_settings(home: Path) -> MeshSettings:
    return make_settings(
        home,
        envoy_route_timeouts={"storage": ROUTE_TIMEOUT_S},
        envoy_request_headers_timeout_seconds=HEADERS_TIMEOUT_S,
        envoy_request_timeout_seconds=REQUEST_TIMEOUT_S,
        envoy_stream_idle_timeout_seconds=3.0,
        envoy_max_connections=MAX_CONNECTIONS,
    )


@pytest_asyncio.fixture
async def fresh_edge(tmp_path: Path) -> AsyncIterator[SpyMesh]:
    """An Envoy of its own: the connection-limit test must not share the listener's count
    with connections the other tests left behind (Envoy counts them until it sees the close,
    which took over 10 s on a loaded box)."""
    spy = SpyMesh(_edge_settings(tmp_path / "home"))
    try:
        await spy.start()
        yield spy
    finally:
        await spy.stop()


@pytest_asyncio.fixture(scope="module")
async def edge(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SpyMesh]:
    spy = SpyMesh(_edge_settings(tmp_path_factory.mktemp("edge-timeouts") / "home"))
    try:
        await spy.start()
        yield spy
    finally:
        await spy.stop()


def _item_url(tenant: str, key: str) -> str:
    return f"/api/v1/tenants/{tenant}/collections/c/partitions/p/items/{key}"


def _seen_timeout(spy: SpyMesh, key: str) -> float | None:
    """The deadline the service saw (seconds left when the call arrived), None for none."""
    calls = [c for c in spy.rec.calls if c.method == "GetItem" and getattr(c.request, "sort_key", "") == key]
    assert calls, f"the call for {key} never reached the service"
    value = calls[-1].metadata.get("x-spy-time-remaining")
    return None if value is None else float(value)


async def test_rest_call_to_a_hung_backend_answers_504_within_the_route_timeout(edge: SpyMesh) -> None:
    headers = dict(bearer(edge.settings, Role.MEMBER, "acme"))
    async with httpx.AsyncClient(base_url=edge.base_url, headers=headers, timeout=60) as c:
        started = time.monotonic()
        r = await c.get(_item_url("acme", "hang-rest"))
        took = time.monotonic() - started
    # Envoy's deadline and the one it handed to the service end at the same moment: either
    # answers first, both as a 504 DEADLINE_EXCEEDED status (the service's gRPC one transcoded).
    assert r.status_code == 504 and r.json()["code"] == 4, r.text
    if r.json()["details"]:
        status_of(r, 504, 4, "DEADLINE_EXCEEDED")
    assert ROUTE_TIMEOUT_S - 0.2 <= took < ROUTE_TIMEOUT_S + SLACK_S, took
    # The service was told how long it has (no client sent a grpc-timeout).
    seen = _seen_timeout(edge, "hang-rest")
    assert seen is not None and seen <= ROUTE_TIMEOUT_S


@pytest.mark.parametrize(
    ("client_timeout", "expect_s"),
    [(None, ROUTE_TIMEOUT_S), (600.0, ROUTE_TIMEOUT_S), (0.5, 0.5)],
    ids=["no-deadline", "deadline-capped", "short-deadline"],
)
async def test_grpc_call_to_a_hung_backend_ends_with_deadline_exceeded(
    edge: SpyMesh, client_timeout: float | None, expect_s: float
) -> None:
    key = f"hang-grpc-{client_timeout}"
    async with grpc.aio.insecure_channel(edge.grpc_target) as channel:
        stub = storage_service_pb2_grpc.StorageServiceStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetItem(
                items_pb2.GetItemRequest(tenant_id="acme", collection="c", partition_key="p", sort_key=key),
                metadata=bearer(edge.settings, Role.MEMBER, "acme"),
                timeout=client_timeout,
            )
        took = time.monotonic() - started
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err.value
    assert expect_s - 0.2 <= took < expect_s + SLACK_S, took
    seen = _seen_timeout(edge, key)
    assert seen is not None and seen <= expect_s + 0.05, seen


async def _open(edge: SpyMesh) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(edge.settings.host, edge.settings.envoy_port)


async def _closed_after(reader: asyncio.StreamReader, limit: float) -> tuple[float, bytes]:
    """Seconds until Envoy closed the connection (reading whatever it said first)."""
    started = time.monotonic()
    said = b""
    while True:
        try:
            chunk = await asyncio.wait_for(reader.read(4096), timeout=limit)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return time.monotonic() - started, said
        said += chunk


async def test_slow_header_clients_are_cut_off(edge: SpyMesh) -> None:
    """20 connections that start a request and never finish its headers."""
    conns = [await _open(edge) for _ in range(10)]
    conns += [await _open(edge) for _ in range(10)]
    try:
        for _, writer in conns:
            writer.write(b"GET /api/v1/admin/tenants HTTP/1.1\r\nHost: makoto\r\nX-Slow: ")
            await writer.drain()
        results = await asyncio.gather(
            *(_closed_after(reader, HEADERS_TIMEOUT_S + SLACK_S + 5) for reader, _ in conns)
        )
    finally:
        for _, writer in conns:
            writer.close()
    for took, said in results:
        assert took < HEADERS_TIMEOUT_S + SLACK_S, took
        assert said == b"" or said.startswith(b"HTTP/1.1 408"), said[:200]


async def test_slow_body_clients_are_cut_off(edge: SpyMesh) -> None:
    """5 clients trickling a REST body, one byte every 0.2 s, never finishing it."""
    token = dict(bearer(edge.settings, Role.MEMBER, "acme"))["authorization"]
    head = (
        f"PUT {_item_url('acme', 'slow')} HTTP/1.1\r\nHost: makoto\r\nAuthorization: {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
    ).encode()

    async def trickle(writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            writer.write(head)
            while True:
                await asyncio.sleep(0.2)
                writer.write(b" ")
                await writer.drain()

    conns = [await _open(edge) for _ in range(5)]
    tricklers = [asyncio.create_task(trickle(writer)) for _, writer in conns]
    try:
        results = await asyncio.gather(
            *(_closed_after(reader, REQUEST_TIMEOUT_S + SLACK_S + 5) for reader, _ in conns)
        )
    finally:
        for task in tricklers:
            task.cancel()
        for _, writer in conns:
            writer.close()
    for took, said in results:
        # A REST request finds its route only once the transcoder has the whole body, so the
        # listener's request timeout is what bounds a body upload.
        assert REQUEST_TIMEOUT_S - 0.5 < took < REQUEST_TIMEOUT_S + SLACK_S, (took, said)
        assert said.startswith(b"HTTP/1.1 408"), said[:300]
        head, _, body = said.partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head.lower(), head
        status = json.loads(body)
        assert status["code"] == 4 and status["details"][0]["reason"] == "REQUEST_TIMEOUT", status


async def _open_idle(edge: SpyMesh) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has sent a whole request and read its answer: idle keep-alive, so no
    header or request timer can close it while the test holds it (on a busy box opening the
    whole set can take longer than the 1.5 s header timeout of this mesh)."""
    reader, writer = await _open(edge)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await asyncio.wait_for(reader.readexactly(length), timeout=10)
    return reader, writer


async def test_connections_past_the_limit_are_closed(fresh_edge: SpyMesh) -> None:
    edge = fresh_edge
    held = [await _open_idle(edge) for _ in range(MAX_CONNECTIONS)]
    try:
        await asyncio.sleep(0.3)
        reader, writer = await _open(edge)
        took, said = await _closed_after(reader, 5)
        writer.close()
        # Closed at accept, not after some timeout.
        assert said == b"" and took < SLACK_S, (took, said)
    finally:
        for _, w in held:
            w.close()
    # Room again once clients go away (Envoy notices the closes within moments).
    deadline = time.monotonic() + 10
    async with httpx.AsyncClient(base_url=edge.base_url, timeout=5) as c:
        while True:
            try:
                if (await c.get("/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "no room on the listener after the clients left"
            await asyncio.sleep(0.2)
