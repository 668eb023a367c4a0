"""Drill harness for the control plane: each server is its own process (so TenantService can be
killed with SIGKILL and started again on the same port), talked to directly on its gRPC port.

Processes get the settings as MAKOTO_* variables (as the launcher passes them) and are always
stopped by the fixture that started them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from makoto.llm.v1 import llm_pb2, llm_pb2_grpc
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.config import MeshSettings
from services.common.identity import Role
from services.mesh.processes import settings_env
from tests.support import bearer, direct_channel, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
NATS_URL = os.environ.get("MAKOTO_TEST_NATS_URL", "nats://127.0.0.1:4222")


def private_prefix() -> str:
    """A NATS subject prefix no other test run (on this shared NATS server) uses."""
    return f"makoto-test-{uuid.uuid4().hex[:12]}"


def closed_port_url() -> str:
    return f"nats://127.0.0.1:{free_port()}"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int


@dataclass
class ControlPlane:
    settings: MeshSettings
    procs: dict[str, Process] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAKOTO_")}
        env.update(settings_env(self.settings))
        env.update(self.extra_env)
        env.update(overrides)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, name: str, *, module: str | None = None, port: int | None = None, **env: str) -> Process:
        """Start `python -m services.<name>` (or `module`); `name` keys it (e.g. "tenant-2")."""
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", module or f"services.{name}"],
                cwd=REPO_ROOT,
                env=self.env(**env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = Process(name, popen, log, port or 0)
        self.procs[name] = proc
        return proc

    def start_service(self, service: str, **env: str) -> Process:
        return self.start(service, port=getattr(self.settings, f"{service}_port"), **env)

    def kill9(self, name: str) -> None:
        proc = self.procs[name]
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(timeout=10)

    def log_text(self, name: str) -> str:
        return self.procs[name].log.read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=5)

    async def wait_serving(self, name: str) -> None:
        """Until the process's gRPC health answers SERVING (fails if the process exits)."""
        proc = self.procs[name]
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with direct_channel(f"{self.settings.host}:{proc.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                if proc.popen.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited ({proc.popen.returncode}):\n{self.log_text(name)[-3000:]}"
                    )
                try:
                    answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not serving after {READY_TIMEOUT_S}s")
                await asyncio.sleep(0.1)

    async def wait_port(self, name: str) -> None:
        proc = self.procs[name]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.log_text(name)[-3000:]}")
            try:
                _, writer = await asyncio.open_connection(self.settings.host, proc.port)
                writer.close()
                await writer.wait_closed()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not listening") from None
                await asyncio.sleep(0.1)

    async def start_mesh(self) -> None:
        """Simulator, then the four services (no Envoy: the drills use the service ports)."""
        self.start("simulator", module="services.llm.simulator", port=self.settings.simulator_port)
        await self.wait_port("simulator")
        for service in ("tenant", "metering", "storage", "llm"):
            self.start_service(service)
        for service in ("tenant", "metering", "storage", "llm"):
            await self.wait_serving(service)


@dataclass
class Clients:
    """gRPC stubs on each service's own port."""

    settings: MeshSettings
    channels: list[grpc.aio.Channel]
    tenants: tenant_pb2_grpc.TenantServiceStub
    storage: storage_service_pb2_grpc.StorageServiceStub
    llm: llm_pb2_grpc.LLMServiceStub
    metering: metering_pb2_grpc.MeteringServiceStub

    def admin(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.settings, Role.PLATFORM_ADMIN)

    def member(self, tenant_id: str) -> tuple[tuple[str, str], ...]:
        return bearer(self.settings, Role.MEMBER, tenant_id)

    async def create_tenant(self, tenant_id: str) -> tenant_pb2.Tenant:
        created: tenant_pb2.Tenant = await self.tenants.CreateTenant(
            tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id=tenant_id)),
            metadata=self.admin(),
            timeout=30,
        )
        return created

    # One call of each kind a tenant makes; each raises AioRpcError when refused.
    async def storage_call(self, tenant_id: str, n: int = 0) -> None:
        item = items_pb2.Item(collection="drill", partition_key="p", sort_key=f"s{n % 10}")
        await self.storage.PutItem(
            items_pb2.PutItemRequest(tenant_id=tenant_id, item=item),
            metadata=self.member(tenant_id),
            timeout=10,
        )

    async def llm_call(self, tenant_id: str, n: int = 0) -> None:
        await self.llm.CreateChatCompletion(
            llm_pb2.CreateChatCompletionRequest(
                tenant_id=tenant_id, messages=[llm_pb2.ChatMessage(role="user", content=f"hello {n}")]
            ),
            metadata=self.member(tenant_id),
            timeout=10,
        )

    async def metering_call(self, tenant_id: str, n: int = 0) -> None:
        await self.metering.QueryUsage(
            metering_pb2.QueryUsageRequest(tenant_id=tenant_id, meter="api_calls"),
            metadata=self.member(tenant_id),
            timeout=10,
        )

    async def invoice_call(self, tenant_id: str, n: int = 0) -> None:
        month = time.strftime("%Y-%m", time.gmtime())
        await self.metering.GetInvoice(
            metering_pb2.GetInvoiceRequest(tenant_id=tenant_id, month=month),
            metadata=self.member(tenant_id),
            timeout=10,
        )

    async def limits_call(self, tenant_id: str, n: int = 0) -> None:
        await self.metering.GetTenantLimits(
            metering_pb2.GetTenantLimitsRequest(tenant_id=tenant_id),
            metadata=self.member(tenant_id),
            timeout=10,
        )

    async def usage_by(self, tenant_id: str, group: str) -> dict[str, int]:
        """api_calls of a tenant grouped by one dimension (read as platform-admin)."""
        answer = await self.metering.QueryUsage(
            metering_pb2.QueryUsageRequest(tenant_id=tenant_id, meter="api_calls", group_by=[group]),
            metadata=self.admin(),
            timeout=10,
        )
        out: dict[str, int] = {}
        for row in answer.rows:
            key = row.group.get(group, "")
            out[key] = out.get(key, 0) + int(row.value)
        return out


async def open_clients(settings: MeshSettings, tenant_address: str | None = None) -> Clients:
    def channel(service: str) -> grpc.aio.Channel:
        return direct_channel(settings.address(service))

    tch = direct_channel(tenant_address or settings.address("tenant"))
    sch, lch, mch = channel("storage"), channel("llm"), channel("metering")
    return Clients(
        settings=settings,
        channels=[tch, sch, lch, mch],
        tenants=tenant_pb2_grpc.TenantServiceStub(tch),
        storage=storage_service_pb2_grpc.StorageServiceStub(sch),
        llm=llm_pb2_grpc.LLMServiceStub(lch),
        metering=metering_pb2_grpc.MeteringServiceStub(mch),
    )


async def close_clients(clients: Clients) -> None:
    for ch in clients.channels:
        await ch.close()


@contextlib.asynccontextmanager
async def running(plane: ControlPlane) -> AsyncIterator[Clients]:
    """Start the whole drill mesh, yield clients, stop everything."""
    try:
        await plane.start_mesh()
        clients = await open_clients(plane.settings)
        try:
            yield clients
        finally:
            await close_clients(clients)
    finally:
        plane.stop_all()
