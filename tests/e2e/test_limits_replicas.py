"""Limits hold across replicas: two StorageService and two LLMService replicas behind one Envoy
(each cluster has two endpoints), one Redis (the machine's, under this mesh's own key prefix).

A tenant driving both replicas gets one rate limit and one tpm, within a stated tolerance over a
bounded window; a stream that crosses the tenant's budget ends mid-way with an error event (SSE)
or RESOURCE_EXHAUSTED (gRPC), and exactly the delivered tokens are metered."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from makoto.llm.v1 import llm_pb2, llm_pb2_grpc
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc

from services.common.identity import Role
from services.llm.ports import Message
from services.llm.tokens import count_chat_tokens, count_tokens
from tests.e2e.test_replicas import _host_requests
from tests.mesh_fixture import RunningMesh, start_mesh, stop_mesh
from tests.support import direct_channel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

API = "/api/v1"
WINDOW_S = 4.0
WORKERS = 6


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    # Limits reach the replicas within a second of an admin change here (default 5 s).
    mesh = start_mesh(
        tmp_path_factory.mktemp("limits-replicas"),
        storage_replicas=2,
        llm_replicas=2,
        limits_cache_ttl_seconds=1.0,
    )
    yield mesh
    stop_mesh(mesh)


def new_tenant(mesh: RunningMesh, prefix: str, limits: dict[str, Any]) -> str:
    tenant = f"{prefix}-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=mesh.base_url, headers=mesh.headers(Role.PLATFORM_ADMIN), timeout=30) as c:
        r = c.post(f"{API}/admin/tenants", json={"tenantId": tenant})
        assert r.status_code == 200, r.text
        r = c.put(f"{API}/admin/tenants/{tenant}/limits", json=limits)
        assert r.status_code == 200, r.text
    return tenant


async def drive(seconds: float, call: Any) -> list[Any]:
    """WORKERS concurrent loops calling `call()` for `seconds`; every result."""
    results: list[Any] = []
    stop = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop:
            results.append(await call())

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return results


async def test_one_rate_limit_across_two_storage_replicas(replicated: RunningMesh) -> None:
    rate, burst = 10, 10
    tenant = new_tenant(replicated, "rl-rep", {"api": {"requestsPerSecond": rate, "burst": burst}})
    headers = replicated.headers(Role.MEMBER, tenant)
    path = f"{API}/tenants/{tenant}/collections/c/partitions/p/items/s"
    async with httpx.AsyncClient(base_url=replicated.base_url, timeout=30) as c:
        r = await c.put(path, json={"attributes": {"n": {"intValue": "1"}}}, headers=headers)
        assert r.status_code == 200, r.text
        await asyncio.sleep(1.5)  # a full bucket and the limits cache refreshed on both replicas
        before = await _host_requests(replicated, "storage")

        async def get() -> int:
            return (await c.get(path, headers=headers)).status_code

        codes = await drive(WINDOW_S, get)
        after = await _host_requests(replicated, "storage")
    ok, limited = codes.count(200), codes.count(429)
    assert set(codes) <= {200, 429}, set(codes)
    # One limit for the tenant: burst + rate x window, give or take one refill per worker
    # (a per-replica limit would allow about twice as many).
    allowed = burst + rate * WINDOW_S
    assert allowed * 0.8 <= ok <= allowed + WORKERS, (ok, allowed)
    assert limited > ok  # the load was well over the limit
    served = [after[h] - before.get(h, 0) for h in after]
    assert len(served) == 2 and min(served) > len(codes) * 0.2, served  # both replicas took calls


def _reason(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for d in status.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            return str(info.reason)
    return ""


async def test_one_tpm_across_two_llm_replicas(replicated: RunningMesh) -> None:
    tpm = 600  # 10 tokens per second, burst 600
    # Request rates out of the way: the token rate is what is measured here.
    fast = {"requestsPerSecond": 1000, "burst": 1000}
    tenant = new_tenant(replicated, "tpm-rep", {"llmTokensPerMinute": str(tpm), "api": fast, "llm": fast})
    await asyncio.sleep(1.5)
    used: list[int] = []
    async with grpc.aio.insecure_channel(replicated.grpc_target) as channel:
        stub = llm_pb2_grpc.LLMServiceStub(channel)
        md = replicated.metadata(Role.MEMBER, tenant)
        request = llm_pb2.CreateChatCompletionRequest(
            tenant_id=tenant, messages=[llm_pb2.ChatMessage(role="user", content="one two three four five")]
        )

        async def chat() -> str:
            try:
                answer = await stub.CreateChatCompletion(request, metadata=md, timeout=10)
                used.append(answer.usage.total_tokens)
                return "ok"
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
                return _reason(err)

        outcomes = await drive(WINDOW_S, chat)
    assert set(outcomes) <= {"ok", "LLM_RATE_LIMITED"}, set(outcomes)
    assert outcomes.count("LLM_RATE_LIMITED") > 0
    per_call = used[0]
    # The burst plus the refill over the window; calls in flight reserve their prompt estimate
    # and settle the completion afterwards, so each worker may overshoot by one call.
    allowed = tpm + tpm / 60 * WINDOW_S
    assert allowed * 0.8 <= sum(used) <= allowed + WORKERS * per_call, (sum(used), allowed)


async def _metered_tokens(mesh: RunningMesh, tenant: str, expected: tuple[int, int]) -> tuple[int, int]:
    async with direct_channel(mesh.address("metering")) as channel:
        stub = metering_pb2_grpc.MeteringServiceStub(channel)
        got = (0, 0)
        for _ in range(60):
            values = []
            for meter in ("llm_prompt_tokens", "llm_completion_tokens"):
                rows = await stub.QueryUsage(
                    metering_pb2.QueryUsageRequest(tenant_id=tenant, meter=meter),
                    metadata=mesh.metadata(Role.PLATFORM_ADMIN),
                )
                values.append(sum(r.value for r in rows.rows))
            got = (values[0], values[1])
            if got == expected:
                break
            await asyncio.sleep(0.5)
    return got


async def test_a_stream_crossing_the_budget_ends_with_an_error_event(replicated: RunningMesh) -> None:
    budget = 200
    tenant = new_tenant(replicated, "budget-rep", {"llmMonthlyTokens": str(budget)})
    await asyncio.sleep(1.5)
    words = " ".join(f"w{i}" for i in range(120))  # 126 prompt tokens, 122 answer tokens
    prompt = count_chat_tokens([Message("user", words)])
    body = {"model": "chat", "messages": [{"role": "user", "content": words}]}
    events: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=replicated.base_url, timeout=30) as c:
        async with c.stream(
            "POST",
            f"{API}/tenants/{tenant}/chat/completions:stream",
            json=body,
            headers=replicated.headers(Role.MEMBER, tenant),
        ) as r:
            assert r.status_code == 200
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: ") :]))
    assert "error" in events[-1], events[-1]
    error = events[-1]["error"]
    assert error["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert error["details"][0]["reason"] == "LLM_BUDGET_EXCEEDED"
    delivered = "".join(e.get("delta", "") for e in events)
    assert f"Echo: {words}".startswith(delivered) and 0 < len(delivered) < len(f"Echo: {words}")
    completion = count_tokens(delivered)
    # At most one chunk over the budget, and exactly what was delivered is metered.
    last_chunk = count_tokens([e for e in events if e.get("delta")][-1]["delta"])
    assert budget < prompt + completion <= budget + last_chunk
    assert await _metered_tokens(replicated, tenant, (prompt, completion)) == (prompt, completion)

    # gRPC through Envoy: the budget is spent, the next call is refused up front.
    async with grpc.aio.insecure_channel(replicated.grpc_target) as channel:
        stub = llm_pb2_grpc.LLMServiceStub(channel)
        call = stub.StreamChatCompletion(
            llm_pb2.CreateChatCompletionRequest(
                tenant_id=tenant, messages=[llm_pb2.ChatMessage(role="user", content="hi")]
            ),
            metadata=replicated.metadata(Role.MEMBER, tenant),
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _reason(caught.value) == "LLM_BUDGET_EXCEEDED"
