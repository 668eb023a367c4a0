"""Fixtures of the LLM suite: the simulator on a free port, and a real LLMService (in-process
gRPC server) whose tenants come from a FixedTenants directory and whose usage goes to a
MemoryRecorder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import pytest
from aiohttp import web
from makoto.llm.v1 import llm_pb2_grpc

from services.common.config import MeshSettings
from services.common.secrets import SecretResolver
from services.llm.config import LlmSettings
from services.llm.server import build
from services.llm.simulator import SIMULATOR_KEY_NAME, SimulatorState, simulator_state, start_simulator
from tests.limits_support import FixedLimits, fixed_limits_parts
from tests.support import bearer, direct_channel, make_settings, running_server
from tests.unit.llm.support import FixedTenants, MemoryRecorder, llm_binding

SIM_KEY = "sk-sim-test-7f3a9c2e41d86b05"


@dataclass
class LlmHarness:
    settings: MeshSettings
    stub: llm_pb2_grpc.LLMServiceStub
    recorder: MemoryRecorder
    tenants: FixedTenants
    secrets: SecretResolver
    simulator: web.AppRunner
    limits: FixedLimits

    @property
    def sim(self) -> SimulatorState:
        return simulator_state(self.simulator)

    def md(self, tenant_id: str, role: str = "member") -> tuple[tuple[str, str], ...]:
        return bearer(self.settings, role, tenant_id)


@pytest.fixture(scope="module")
async def simulator_settings(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[MeshSettings, web.AppRunner]]:
    settings = make_settings(tmp_path_factory.mktemp("llm"))
    runner = await start_simulator(
        settings.host, settings.simulator_port, SIM_KEY, slow_response_seconds=3.0, slow_chunk_seconds=0.05
    )
    try:
        yield settings, runner
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def harness(simulator_settings: tuple[MeshSettings, web.AppRunner]) -> AsyncIterator[LlmHarness]:
    settings, runner = simulator_settings
    secrets = SecretResolver.for_settings(settings)
    secrets.set(SIMULATOR_KEY_NAME, SIM_KEY)
    recorder = MemoryRecorder()
    tenants = FixedTenants()
    for tenant in ("acme", "globex"):
        tenants.put(tenant, llm_binding())
    options = LlmSettings(max_retries=1, timeout_seconds=10.0)
    limits = FixedLimits()
    server = partial(
        build,
        recorder=recorder,
        tenants=tenants,
        secrets=secrets,
        options=options,
        limits=fixed_limits_parts(settings, limits),
    )
    async with running_server(server, settings):
        async with direct_channel(settings.address("llm")) as channel:
            yield LlmHarness(
                settings, llm_pb2_grpc.LLMServiceStub(channel), recorder, tenants, secrets, runner, limits
            )
