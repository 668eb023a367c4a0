"""Two replicas of storage and llm behind one Envoy (a mesh of its own, `start_mesh`):
both replicas take traffic, readiness is per service, and the drills of issue 7 —
kill -9 of one storage replica under load (only in-flight calls fail, every acknowledged write is
there afterwards) and a rolling SIGTERM of one replica under load (no call fails)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.identity import Role
from services.mesh.envoy_admin import admin_get
from tests.mesh_fixture import RunningMesh, start_mesh, stop_mesh
from tests.support import direct_channel

pytestmark = pytest.mark.e2e

API = "/api/v1"
WORKERS = 8


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    mesh = start_mesh(tmp_path_factory.mktemp("replicas"), storage_replicas=2, llm_replicas=2)
    yield mesh
    stop_mesh(mesh)


@pytest.fixture(scope="module")
def tenant(replicated: RunningMesh) -> str:
    tenant = f"rep-{uuid.uuid4().hex[:10]}"
    with httpx.Client(
        base_url=replicated.base_url, headers=replicated.headers(Role.PLATFORM_ADMIN), timeout=30
    ) as c:
        r = c.post(f"{API}/admin/tenants", json={"tenantId": tenant})
        assert r.status_code == 200, r.text
        # The drills measure failover, not the tenant's plan: rates far above what this box serves.
        rate = {"requestsPerSecond": 1_000_000, "burst": 1_000_000}
        r = c.put(
            f"{API}/admin/tenants/{tenant}/limits",
            json={"api": rate, "reads": rate, "writes": rate, "llm": rate},
        )
        assert r.status_code == 200, r.text
    return tenant


async def _health(address: str, service: str) -> int:
    async with direct_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        return int(reply.status)


async def _host_requests(mesh: RunningMesh, cluster: str) -> dict[str, int]:
    """rq_total per endpoint of a cluster, from Envoy's admin /clusters."""
    text = (await admin_get(mesh.settings, "/clusters", wait=5)).text
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == cluster and parts[2] == "rq_total":
            out[parts[1]] = int(parts[3])
    return out


async def test_each_replica_is_its_own_process_and_both_take_traffic(
    replicated: RunningMesh, tenant: str
) -> None:
    for service, full in (
        ("storage", "makoto.storage.v1.StorageService"),
        ("llm", "makoto.llm.v1.LLMService"),
    ):
        replicas = replicated.replicas(service)
        assert [r.index for r in replicas] == [0, 1]
        assert len({r.pid for r in replicas}) == 2
        assert len({r.address for r in replicas}) == 2
        for r in replicas:
            assert await _health(r.address, full) == health_pb2.HealthCheckResponse.SERVING
    # Single-replica services stay single.
    assert len(replicated.replicas("tenant")) == 1
    before = await _host_requests(replicated, "storage")
    async with httpx.AsyncClient(
        base_url=replicated.base_url, headers=replicated.headers(Role.MEMBER, tenant)
    ) as c:
        for i in range(20):
            r = await c.get(f"{API}/tenants/{tenant}/collections/c/partitions/p/items/missing-{i}")
            assert r.status_code == 404, r.text
    after = await _host_requests(replicated, "storage")
    assert set(after) == {r.address for r in replicated.replicas("storage")}
    served = {host: after[host] - before.get(host, 0) for host in after}
    assert all(n >= 5 for n in served.values()), served


@dataclass
class Load:
    """Writers putting items (each key once) and readers, counting what happened."""

    mesh: RunningMesh
    tenant: str
    acked: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    calls: int = 0
    chat: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, key: str) -> str:
        return f"{API}/tenants/{self.tenant}/collections/drill/partitions/p/items/{key}"

    async def _worker(self, n: int) -> None:
        headers = self.mesh.headers(Role.MEMBER, self.tenant)
        async with httpx.AsyncClient(base_url=self.mesh.base_url, headers=headers, timeout=30) as c:
            i = 0
            while not self._stop.is_set():
                key = f"w{n}-{i}"
                i += 1
                self.calls += 1
                try:
                    r = await c.put(self.url(key), json={"attributes": {"n": {"intValue": str(i)}}})
                except httpx.HTTPError as exc:
                    self.failures.append(f"PUT {key}: {exc!r}")
                    continue
                if r.status_code == 200:
                    self.acked.append(key)
                else:
                    self.failures.append(f"PUT {key}: {r.status_code} {r.text[:200]}")
                self.calls += 1
                try:
                    r = await c.get(self.url(key))
                except httpx.HTTPError as exc:
                    self.failures.append(f"GET {key}: {exc!r}")
                    continue
                if r.status_code not in (200, 404):
                    self.failures.append(f"GET {key}: {r.status_code} {r.text[:200]}")
                if self.chat:
                    await self._chat(c, key)

    async def _chat(self, c: httpx.AsyncClient, key: str) -> None:
        self.calls += 1
        body = {"messages": [{"role": "user", "content": key}]}
        try:
            r = await c.post(f"{API}/tenants/{self.tenant}/chat/completions", json=body)
        except httpx.HTTPError as exc:
            self.failures.append(f"chat {key}: {exc!r}")
            return
        if r.status_code != 200:
            self.failures.append(f"chat {key}: {r.status_code} {r.text[:200]}")

    async def run_while(self, action: asyncio.Future[None] | asyncio.Task[None], settle: float) -> None:
        workers = [asyncio.create_task(self._worker(n)) for n in range(WORKERS)]
        try:
            await action
            await asyncio.sleep(settle)
        finally:
            self._stop.set()
            await asyncio.gather(*workers)

    async def missing_acked(self) -> list[str]:
        headers = self.mesh.headers(Role.MEMBER, self.tenant)
        missing = []
        async with httpx.AsyncClient(base_url=self.mesh.base_url, headers=headers, timeout=30) as c:
            for key in self.acked:
                r = await c.get(self.url(key))
                if r.status_code != 200:
                    missing.append(f"{key}: {r.status_code}")
        return missing


async def test_kill_9_of_one_storage_replica_fails_only_in_flight_calls(
    replicated: RunningMesh, tenant: str
) -> None:
    load = Load(replicated, tenant)
    victim = replicated.replicas("storage")[1]

    ready_after_kill: list[int] = []

    async def kill() -> None:
        await asyncio.sleep(1.5)
        os.kill(victim.pid, signal.SIGKILL)
        await asyncio.sleep(1.2)  # the health check has seen it; the restart is not done yet
        async with httpx.AsyncClient(base_url=replicated.base_url, timeout=5) as c:
            for path in ("/healthz", "/healthz/storage"):
                ready_after_kill.append((await c.get(path)).status_code)

    await load.run_while(asyncio.create_task(kill()), settle=3.0)
    # At most the calls that were on the killed replica at that moment: one per worker.
    print(f"kill -9 drill: {load.calls} calls, {len(load.failures)} failed, {len(load.acked)} writes acked")
    for failure in load.failures:
        print("  failed:", failure)
    assert len(load.failures) <= WORKERS, load.failures
    # Reads are retried on another replica unless the dead one had already started its answer
    # (Envoy cannot retry then); a write is retried only when it never reached the dead one. So
    # the failures are writes in flight on it, or reads cut mid-answer.
    assert all(
        "connection_termination" in f
        and (f.startswith("PUT ") or "upstream_reset_after_response_started" in f)
        for f in load.failures
    ), load.failures
    assert len(load.acked) > 50
    assert await load.missing_acked() == []
    # One healthy replica is enough to be ready.
    assert ready_after_kill == [200, 200]
    # The launcher restarts the replica; Envoy sends it traffic again once healthy.
    fresh = await asyncio.to_thread(replicated.wait_replica_restarted, "storage", 1, victim.pid)
    assert await _health(fresh.address, "makoto.storage.v1.StorageService") == 1


@pytest.mark.parametrize("service", ["storage", "llm"])
async def test_rolling_sigterm_of_one_replica_fails_no_call(
    replicated: RunningMesh, tenant: str, service: str
) -> None:
    load = Load(replicated, tenant, chat=service == "llm")
    victim = replicated.replicas(service)[0]

    async def terminate() -> None:
        await asyncio.sleep(1.0)
        os.kill(victim.pid, signal.SIGTERM)
        await asyncio.to_thread(replicated.wait_replica_restarted, service, 0, victim.pid)

    started = time.monotonic()
    await load.run_while(asyncio.create_task(terminate()), settle=2.0)
    print(
        f"rolling SIGTERM drill ({service}): {load.calls} calls in {time.monotonic() - started:.1f}s, "
        f"{len(load.failures)} failed"
    )
    assert load.failures == []
    assert load.calls > 50
    assert await load.missing_acked() == []
