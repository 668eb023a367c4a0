"""Section 6 (issue 10): StorageService with 1 and with 2 worker processes on one port."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import grpc
import psutil
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

from services.common.identity import Role
from services.mesh.processes import settings_env
from tests.bench import items as item_bench
from tests.bench.harness import Config, Environment, say
from tests.bench.load import LoadResult, median_result, run_fixed
from tests.bench.mesh import BenchMesh
from tests.bench.report import REPO_ROOT, Table, ms, rate, ratio
from tests.bench.tenants import create_tenant
from tests.support import direct_channel, free_port

# Channels the client spreads its calls over: the kernel spreads connections, not calls.
CHANNELS = 4


class StorageProcess:
    """`python -m services.storage` with N workers on a port of its own, next to the bench mesh
    (its own replica index, hence its own usage spools)."""

    def __init__(self, mesh: BenchMesh, workers: int, replica: int) -> None:
        self.port = free_port()
        self.address = f"{mesh.settings.host}:{self.port}"
        env = {
            **os.environ,
            **settings_env(mesh.settings),
            "MAKOTO_STORAGE_PORT": str(self.port),
            "MAKOTO_STORAGE_WORKERS": str(workers),
            "MAKOTO_REPLICA_INDEX": str(replica),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.storage"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def pids(self) -> list[int]:
        proc = psutil.Process(self.process.pid)
        return [proc.pid, *(c.pid for c in proc.children())]

    async def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                async with direct_channel(self.address) as ch:
                    await asyncio.wait_for(ch.channel_ready(), 2.0)
                    return
            except (TimeoutError, grpc.aio.AioRpcError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"storage with workers at {self.address} did not start") from None

    def stop(self) -> None:
        children = psutil.Process(self.process.pid).children() if self.process.poll() is None else []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        _, alive = psutil.wait_procs(children, timeout=5)
        for proc in alive:
            proc.kill()


def _get_op(
    stubs: list[storage_service_pb2_grpc.StorageServiceStub],
    request: items_pb2.GetItemRequest,
    md: tuple[tuple[str, str], ...],
) -> Callable[[int], Awaitable[None]]:
    async def op(i: int) -> None:
        got = await stubs[i % len(stubs)].GetItem(request, metadata=md)
        if got.sort_key != "one":
            raise AssertionError("GetItem returned another item")

    return op


async def bench_workers(cfg: Config, env: Environment) -> Table:
    mesh = env.mesh
    assert mesh is not None
    table = Table(
        "6. StorageService workers: GetItem with 1 and 2 worker processes on one port (issue 10)",
        [
            "workers",
            "requests",
            "concurrency",
            "req/s",
            "p50 ms",
            "p99 ms",
            "req/s vs 1 worker",
            "server CPU µs/req",
        ],
    )
    tid = await create_tenant(mesh, "bench-workers")
    md = mesh.metadata(Role.MEMBER, tid)
    item = items_pb2.Item(
        collection="hot", partition_key="p", sort_key="one", attributes=item_bench.attributes(1)
    )
    request = items_pb2.GetItemRequest(tenant_id=tid, collection="hot", partition_key="p", sort_key="one")
    n, conc = cfg.getitem_requests, cfg.getitem_concurrency
    procs = {1: StorageProcess(mesh, 1, 8), 2: StorageProcess(mesh, 2, 9)}
    try:
        for p in procs.values():
            await p.ready()
        results: dict[int, list[LoadResult]] = {1: [], 2: []}
        for r in range(cfg.getitem_rounds):
            for workers in (1, 2) if r % 2 == 0 else (2, 1):
                proc = procs[workers]
                channels = [direct_channel(proc.address) for _ in range(CHANNELS)]
                try:
                    stubs = [storage_service_pb2_grpc.StorageServiceStub(ch) for ch in channels]
                    if r == 0:
                        await stubs[0].PutItem(
                            items_pb2.PutItemRequest(tenant_id=tid, item=item), metadata=md
                        )

                    op = _get_op(stubs, request, md)
                    await run_fixed(op, cfg.getitem_warmup, conc)
                    watch = {f"s{i}": pid for i, pid in enumerate(proc.pids())}
                    res = await run_fixed(op, n, conc, watch)
                    results[workers].append(res)
                    say(f"workers round {r + 1}: {workers} worker(s): {res.rps:,.0f} req/s")
                finally:
                    for ch in channels:
                        await ch.close()
    finally:
        for p in procs.values():
            p.stop()
    base = median_result(results[1])
    for workers in (1, 2):
        res = median_result(results[workers])
        cpu = sum(res.cpu.values()) / res.requests * 1e6
        table.add(
            workers,
            res.requests,
            res.concurrency,
            rate(res.rps),
            ms(res.p50_ms),
            ms(res.p99_ms),
            ratio(res.rps, base.rps),
            f"{cpu:.0f}",
        )
    table.notes += [
        "Two extra StorageService processes next to the mesh (MAKOTO_STORAGE_WORKERS=1 and =2, each on a "
        f"port of its own, same TenantService, MeteringService and Redis); the client spreads its calls over "
        f"{CHANNELS} channels (HTTP/2 connections), since SO_REUSEPORT hands connections, not calls, to the "
        f"workers. {n} calls per round at concurrency {conc}, {cfg.getitem_rounds} rounds, order alternated, "
        "median round shown. Server CPU: the supervisor and its workers together.",
        f"This box has {os.cpu_count()} CPUs shared by the client, the workers, MeteringService and whatever "
        "else runs: a second worker can only help as far as a core is idle.",
    ]
    return table
