"""Workers: StorageService with MAKOTO_STORAGE_WORKERS=2 runs two worker processes on ONE port
(SO_REUSEPORT) under a supervisor. Both answer (each says which it is in the `x-makoto-worker`
trailer of an OK answer), each has its own usage spool, and every call either worker served is
metered exactly once by the session mesh's MeteringService."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import psutil
import pytest
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

from services.common.identity import Role
from services.mesh.processes import settings_env
from tests.mesh_fixture import REPO_ROOT, RunningMesh
from tests.support import direct_channel, free_port

pytestmark = pytest.mark.e2e

# A replica index no mesh uses, so the workers' spools are files of their own.
REPLICA = 7


class Workers:
    def __init__(self, mesh: RunningMesh, log: str) -> None:
        self.port = free_port()
        self.address = f"{mesh.settings.host}:{self.port}"
        env = {
            **os.environ,
            **settings_env(mesh.settings),
            "MAKOTO_STORAGE_PORT": str(self.port),
            "MAKOTO_STORAGE_WORKERS": "2",
            "MAKOTO_REPLICA_INDEX": str(REPLICA),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("MAKOTO_SUPERVISED_WORKER", None)
        # 0600 like every file in the mesh home (tests/security/test_state_file_modes.py walks it).
        self.log = open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.storage"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def worker_pids(self) -> list[int]:
        return [c.pid for c in psutil.Process(self.process.pid).children()]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                for pid in self.worker_pids():
                    psutil.Process(pid).kill()
                self.process.kill()
                self.process.wait(timeout=5)
        self.log.close()
        return self.process.returncode


@pytest.fixture
def workers(mesh: RunningMesh, tmp_path: object) -> Iterator[Workers]:
    w = Workers(mesh, str(mesh.home / "logs" / f"storage-workers-{uuid.uuid4().hex[:6]}.log"))
    try:
        yield w
    finally:
        pids = w.worker_pids() if w.process.poll() is None else []
        w.stop()
        # Nothing left running: the supervisor took its workers with it.
        _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
        assert not alive


async def _serving(address: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with direct_channel(address) as ch:
                await asyncio.wait_for(ch.channel_ready(), 2.0)
                return
        except (TimeoutError, grpc.aio.AioRpcError):
            if time.monotonic() > deadline:
                raise


async def _api_calls(mesh: RunningMesh, tenant: str) -> int:
    now = datetime.now(UTC)
    request = metering_pb2.QueryUsageRequest(tenant_id=tenant, meter="api_calls", group_by=["method"])
    request.start_time.FromDatetime(now - timedelta(hours=1))
    request.end_time.FromDatetime(now + timedelta(hours=1))
    async with direct_channel(mesh.address("metering")) as channel:
        reply = await metering_pb2_grpc.MeteringServiceStub(channel).QueryUsage(
            request, metadata=mesh.metadata(Role.PLATFORM_ADMIN), timeout=10
        )
    return sum(row.value for row in reply.rows if row.group["method"] == "GetItem")


async def test_two_workers_on_one_port_both_answer_and_every_call_is_metered(
    mesh: RunningMesh, workers: Workers
) -> None:
    tenant = f"workers-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        admin = mesh.headers(Role.PLATFORM_ADMIN)
        r = await c.post("/api/v1/admin/tenants", json={"tenantId": tenant}, headers=admin)
        assert r.status_code == 200, r.text
        rate = {"requestsPerSecond": 1_000_000, "burst": 1_000_000}
        r = await c.put(
            f"/api/v1/admin/tenants/{tenant}/limits",
            json={"api": rate, "reads": rate, "writes": rate, "llm": rate},
            headers=admin,
        )
        assert r.status_code == 200, r.text
    await _serving(workers.address)
    assert len(workers.worker_pids()) == 2
    md = mesh.metadata(Role.MEMBER, tenant)
    item = items_pb2.Item(collection="c", partition_key="p", sort_key="s")
    seen: dict[str, int] = {}
    calls = 0
    # The kernel spreads connections, not calls: each fresh channel is a new connection. 40
    # channels all landing on one of two workers would happen with probability 2**-39.
    for _ in range(40):
        async with direct_channel(workers.address) as ch:
            stub = storage_service_pb2_grpc.StorageServiceStub(ch)
            if calls == 0:
                await stub.PutItem(items_pb2.PutItemRequest(tenant_id=tenant, item=item), metadata=md)
            for _ in range(5):
                call = stub.GetItem(
                    items_pb2.GetItemRequest(
                        tenant_id=tenant, collection="c", partition_key="p", sort_key="s"
                    ),
                    metadata=md,
                )
                assert (await call).sort_key == "s"
                worker = dict(await call.trailing_metadata())["x-makoto-worker"]
                seen[worker] = seen.get(worker, 0) + 1
                calls += 1
        if len(seen) == 2 and calls >= 100:
            break
    assert set(seen) == {"0", "1"}, seen
    spools = mesh.settings.home.resolve() / "data" / "spool"
    assert (spools / f"storage-{REPLICA}.sqlite3").exists()
    assert (spools / f"storage-{REPLICA}-w1.sqlite3").exists()
    # Each worker delivers its own spool: every call counted once, none twice.
    deadline = time.monotonic() + 30
    while (metered := await _api_calls(mesh, tenant)) != calls and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
    assert metered == calls
    await asyncio.sleep(1.5)  # a second delivery of the same events would show up by now
    assert await _api_calls(mesh, tenant) == calls
    assert workers.stop() == 0
