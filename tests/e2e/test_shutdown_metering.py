"""Shutdown meters everything: SIGTERM a real LLMService process (a replica of a mesh started as
`make up` does) while its streams run. The streams outlive the grace period and are cut; every
token the clients received is metered (from the restarted replica's spool, drained on start),
and each cut call's api_calls record says UNAVAILABLE / ended=shutdown, not OK."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from makoto.llm.v1 import llm_pb2, llm_pb2_grpc
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc

from services.common.identity import Role
from services.llm.tokens import count_tokens
from tests.mesh_fixture import RunningMesh, start_mesh, stop_mesh
from tests.support import direct_channel

pytestmark = pytest.mark.e2e

STREAMS = 6
# sim-slow sends one chunk per 50 ms: ~300 words take ~15 s, far past the 1 s grace.
WORDS = 300


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    mesh = start_mesh(
        tmp_path_factory.mktemp("shutdown-metering"),
        llm_replicas=2,
        shutdown_grace_seconds=1.0,
        drain_delay_seconds=0.2,
    )
    yield mesh
    stop_mesh(mesh)


async def _stream(stub: llm_pb2_grpc.LLMServiceStub, md: object, tenant: str, started: asyncio.Event) -> str:
    """What the client received before the stream ended (cut, or finished)."""
    text: list[str] = []
    words = " ".join(f"w{i}" for i in range(WORDS))
    call = stub.StreamChatCompletion(
        llm_pb2.CreateChatCompletionRequest(
            tenant_id=tenant, model="sim-slow", messages=[llm_pb2.ChatMessage(role="user", content=words)]
        ),
        metadata=md,
    )
    try:
        async for chunk in call:
            text.append(chunk.delta)
            started.set()
    except grpc.aio.AioRpcError as err:
        # Cut by the shutdown: what arrived before counts. Failing before any chunk is a bug.
        if not started.is_set():
            started.set()
            raise AssertionError(
                f"stream failed before its first chunk: {err.code()} {err.details()}"
            ) from err
    return "".join(text)


async def _usage(
    mesh: RunningMesh, tenant: str, meter: str, group_by: list[str]
) -> dict[tuple[str, ...], int]:
    now = datetime.now(UTC)
    request = metering_pb2.QueryUsageRequest(tenant_id=tenant, meter=meter, group_by=group_by)
    request.start_time.FromDatetime(now - timedelta(hours=1))
    request.end_time.FromDatetime(now + timedelta(hours=1))
    async with direct_channel(mesh.address("metering")) as channel:
        reply = await metering_pb2_grpc.MeteringServiceStub(channel).QueryUsage(
            request, metadata=mesh.metadata(Role.PLATFORM_ADMIN), timeout=10
        )
    return {tuple(row.group[k] for k in group_by): row.value for row in reply.rows}


async def test_sigterm_under_streaming_load_meters_every_delivered_token(pair: RunningMesh) -> None:
    tenant = f"sig-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=pair.base_url, timeout=30) as c:
        r = await c.post(
            "/api/v1/admin/tenants", json={"tenantId": tenant}, headers=pair.headers(Role.PLATFORM_ADMIN)
        )
        assert r.status_code == 200, r.text
        # The drill measures metering, not the tenant's plan: rates far above what this box serves.
        rate = {"requestsPerSecond": 1_000_000, "burst": 1_000_000}
        r = await c.put(
            f"/api/v1/admin/tenants/{tenant}/limits",
            json={"api": rate, "reads": rate, "writes": rate, "llm": rate},
            headers=pair.headers(Role.PLATFORM_ADMIN),
        )
        assert r.status_code == 200, r.text
    victim = pair.replicas("llm")[1]
    md = pair.metadata(Role.MEMBER, tenant)
    async with direct_channel(victim.address) as channel:
        stub = llm_pb2_grpc.LLMServiceStub(channel)
        started = [asyncio.Event() for _ in range(STREAMS)]
        tasks = [asyncio.create_task(_stream(stub, md, tenant, ev)) for ev in started]
        await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in started)), 60)
        for task in tasks:
            if task.done():
                task.result()  # a stream that failed before its first chunk says why
        await asyncio.sleep(0.5)
        os.kill(victim.pid, signal.SIGTERM)
        delivered = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    delivered_tokens = sum(count_tokens(text) for text in delivered)
    full = count_tokens("Echo: " + " ".join(f"w{i}" for i in range(WORDS)))
    # Every stream was cut part-way (the drill is only meaningful if the cut happened).
    assert all(0 < count_tokens(text) < full for text in delivered), [count_tokens(t) for t in delivered]

    # The replacement replica sends what the old one spooled on its way out.
    pair.wait_replica_restarted("llm", 1, victim.pid)
    deadline = time.monotonic() + 60
    while True:
        completion = sum((await _usage(pair, tenant, "llm_completion_tokens", [])).values())
        calls = await _usage(pair, tenant, "api_calls", ["method", "status", "ended"])
        cut = calls.get(("StreamChatCompletion", "UNAVAILABLE", "shutdown"), 0)
        if completion >= delivered_tokens and cut == STREAMS:
            break
        assert time.monotonic() < deadline, (completion, delivered_tokens, calls)
        await asyncio.sleep(0.5)
    # A stream cut short is billed by what the service sent; the client may have missed at most
    # the chunk that was in flight when the connection closed (one word per chunk here).
    assert delivered_tokens <= completion <= delivered_tokens + 2 * STREAMS, (completion, delivered_tokens)
    assert ("StreamChatCompletion", "OK", "") not in calls
    prompt = sum((await _usage(pair, tenant, "llm_prompt_tokens", [])).values())
    assert prompt > 0
    print(
        f"SIGTERM drill: {STREAMS} streams cut, {delivered_tokens} tokens delivered, "
        f"{completion} metered, {cut} api_calls UNAVAILABLE/ended=shutdown"
    )
