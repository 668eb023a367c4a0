"""A broken LLM provider of one tenant: deadlines and the breaker, with the official SDK.

Two tenants use the protocol-faithful simulator through the openai SDK (60 s timeout, 2 SDK
retries configured); the "sick" tenant reaches it through a TCP fault proxy. Black-holed, the
sick tenant's calls end at their deadline (not after 3 x 60 s), the breaker then fails them
fast with UNAVAILABLE + RetryInfo, the "well" tenant is unaffected, and healing closes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import grpc
import pytest
from aiohttp import web
from makoto.llm.v1 import llm_pb2, llm_pb2_grpc

from services.common.breaker import breakers
from services.common.config import MeshSettings
from services.common.secrets import SecretResolver
from services.llm.config import LlmSettings
from services.llm.server import build
from services.llm.simulator import SIMULATOR_KEY_NAME
from tests.fault_proxy import FaultProxy, Mode, fault_proxy
from tests.support import bearer, direct_channel, make_settings, running_server
from tests.unit.llm.conftest import SIM_KEY
from tests.unit.llm.support import FixedTenants, MemoryRecorder, error_info, llm_binding

DEADLINE = 1.0
SLACK = 0.75
THRESHOLD = 3
COOLDOWN = 1.5
HEALTHY_BOUND = 1.0


@dataclass
class LlmDrill:
    proxy: FaultProxy
    stub: llm_pb2_grpc.LLMServiceStub
    settings: MeshSettings

    async def chat(self, tenant: str, timeout: float = DEADLINE) -> tuple[grpc.StatusCode, float, object]:
        request = llm_pb2.CreateChatCompletionRequest(
            tenant_id=tenant, messages=[llm_pb2.ChatMessage(role="user", content="hello")]
        )
        started = time.monotonic()
        try:
            await self.stub.CreateChatCompletion(
                request, metadata=bearer(self.settings, "member", tenant), timeout=timeout
            )
        except grpc.aio.AioRpcError as err:
            return err.code(), time.monotonic() - started, err
        return grpc.StatusCode.OK, time.monotonic() - started, None


@pytest.fixture
async def drill(
    simulator_settings: tuple[MeshSettings, web.AppRunner], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LlmDrill]:
    sim_settings, _ = simulator_settings
    async with fault_proxy(sim_settings.host, sim_settings.simulator_port) as proxy:
        settings = make_settings(
            tmp_path_factory.mktemp("llm-faults"),
            simulator_port=sim_settings.simulator_port,
            breaker_failure_threshold=THRESHOLD,
            breaker_cooldown_seconds=COOLDOWN,
        )
        secrets = SecretResolver.for_settings(settings)
        secrets.set(SIMULATOR_KEY_NAME, SIM_KEY)
        tenants = FixedTenants()
        tenants.put("sick-llm", llm_binding(endpoint=f"http://127.0.0.1:{proxy.port}/v1"))
        tenants.put("well-llm", llm_binding())
        options = LlmSettings(max_retries=2, timeout_seconds=60.0)
        server = partial(build, recorder=MemoryRecorder(), tenants=tenants, secrets=secrets, options=options)
        async with running_server(server, settings):
            async with direct_channel(settings.address("llm")) as channel:
                d = LlmDrill(proxy, llm_pb2_grpc.LLMServiceStub(channel), settings)
                for tenant in ("sick-llm", "well-llm"):
                    code, _, err = await d.chat(tenant, timeout=10)
                    assert code is grpc.StatusCode.OK, err
                yield d
        breakers.reset()


def _reason(err: object) -> str:
    info = error_info(err)[0]  # type: ignore[arg-type]
    return info.reason if info is not None else ""


async def _until_open(d: LlmDrill) -> list[tuple[grpc.StatusCode, float]]:
    seen: list[tuple[grpc.StatusCode, float]] = []
    for _ in range(THRESHOLD + 2):
        code, took, err = await d.chat("sick-llm")
        if code is grpc.StatusCode.UNAVAILABLE and _reason(err) == "BACKEND_CIRCUIT_OPEN":
            return seen
        seen.append((code, took))
    raise AssertionError(f"breaker never opened: {seen}")


async def _heals(d: LlmDrill) -> None:
    await d.proxy.set_mode(Mode.PASS)
    await asyncio.sleep(COOLDOWN + 0.1)
    for _ in range(3):
        code, _, err = await d.chat("sick-llm", timeout=10)
        assert code is grpc.StatusCode.OK, err


async def test_black_holed_provider_times_out_then_fails_fast_and_recovers(drill: LlmDrill) -> None:
    d = drill
    await d.proxy.set_mode(Mode.BLACKHOLE)
    sick = asyncio.ensure_future(_until_open(d))
    well: list[float] = []
    while not sick.done():
        code, took, err = await d.chat("well-llm", timeout=5)
        assert code is grpc.StatusCode.OK, err
        well.append(took)
        await asyncio.sleep(0.05)
    failures = await sick
    assert len(failures) >= THRESHOLD
    for code, took in failures:
        assert code is grpc.StatusCode.DEADLINE_EXCEEDED, failures
        assert took < DEADLINE + SLACK, failures
    assert well and max(well) < HEALTHY_BOUND, well

    code, took, err = await d.chat("sick-llm")
    assert code is grpc.StatusCode.UNAVAILABLE
    # The open circuit answers without trying the provider (its reason says so below); the bound
    # leaves room for a loaded box (0.37 s seen once), still well short of the deadline.
    assert took < DEADLINE / 2
    assert _reason(err) == "BACKEND_CIRCUIT_OPEN"
    retry = error_info(err)[1]  # type: ignore[arg-type]
    assert retry is not None and 0 < retry.retry_delay.ToNanoseconds() / 1e9 <= COOLDOWN
    print(
        f"\ndrill llm black-hole: sick calls {[round(t, 3) for _, t in failures]} s,"
        f" breaker-open answer {took * 1000:.1f} ms, well tenant max {max(well) * 1000:.1f} ms"
    )
    await _heals(d)


async def test_refused_provider_fails_within_the_deadline(drill: LlmDrill) -> None:
    d = drill
    await d.proxy.set_mode(Mode.REFUSE)
    failures = await _until_open(d)
    assert len(failures) >= THRESHOLD
    for code, took in failures:
        # UNAVAILABLE, not DEADLINE_EXCEEDED: with 1 s left the SDK's own retries (first back-off
        # 0.5-1 s, then cut by the deadline) are off, so the real error comes back at once.
        assert code is grpc.StatusCode.UNAVAILABLE, failures
        # Before the deadline (no back-off slept): a refused connect takes milliseconds, but a
        # loaded box once took 0.53 s, so the bound is the deadline, not half of it.
        assert took < DEADLINE * 0.9, failures
    await _heals(d)
