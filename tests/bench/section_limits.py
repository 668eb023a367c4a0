"""Section 5 (issue 6): what per-tenant limits cost, and what they buy.

5a. The limiter's own cost: one ApiRateLimiter.check (one Lua call on Redis) per call, against a
    Redis PING on the same client (the floor any shared-store limiter pays) and the per-replica
    fallback; and GetItem direct to StorageService with API rate limits on (the mesh's server) vs
    off (a second StorageService process on the same home with MAKOTO_API_RATE_LIMITS=false),
    same run, alternating rounds.
5b. Noisy neighbour: tenant B at a steady modest rate, alone, then while tenant A offers ten
    times its rate limit through Envoy (and, for contrast, while A has no effective limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc
from makoto.metering.v1 import metering_pb2
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

from services.common.identity import Role
from services.common.limits.api_rates import ApiRateLimiter, RateLimited
from services.common.limits.counters import SharedCounters
from services.common.limits.model import DEFAULTS, Limits, Rate
from services.common.limits.tenant_limits import TenantLimitsCache
from services.mesh.processes import Child, ChildSpec, python_module, settings_env
from tests.bench import items as item_bench
from tests.bench.harness import Config, Environment, say
from tests.bench.load import LoadResult, median_result, run_fixed
from tests.bench.report import Table, ms, rate, ratio
from tests.bench.tenants import create_tenant, set_limits
from tests.support import direct_channel, free_port

MACHINE_REDIS = "redis://127.0.0.1:6379/0"


async def _fixed(tenant_id: str) -> metering_pb2.TenantLimits:
    high = Rate(1e9, 10**7)
    effective = Limits(api=high, reads=high, writes=high, llm=high).over(DEFAULTS)
    return metering_pb2.TenantLimits(tenant_id=tenant_id, effective=effective.to_proto())


async def _tiny(tenant_id: str) -> metering_pb2.TenantLimits:
    tiny = Rate(0.001, 1)
    effective = Limits(api=tiny, reads=tiny).over(DEFAULTS)
    return metering_pb2.TenantLimits(tenant_id=tenant_id, effective=effective.to_proto())


async def _per_call_us(call: Callable[[], Awaitable[object]], n: int) -> float:
    for _ in range(min(200, n)):
        await call()
    t0 = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - t0) / n * 1e6


async def limiter_cost(n: int) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    shared = SharedCounters(MACHINE_REDIS, prefix=f"makoto-bench-{uuid.uuid4().hex[:8]}:")
    local = SharedCounters(None)
    try:
        client = shared._redis
        assert client is not None
        out.append(("Redis PING, same client (floor)", await _per_call_us(client.ping, n)))
        for name, counters in (
            ("check on Redis (one Lua call)", shared),
            ("check, per-replica fallback", local),
        ):
            limiter = ApiRateLimiter(counters, TenantLimitsCache(_fixed, ttl_seconds=3600))
            out.append((name, await _per_call_us(lambda lim=limiter: lim.check("bench", "reads"), n)))

        blocked = ApiRateLimiter(shared, TenantLimitsCache(_tiny, ttl_seconds=3600))

        async def refused() -> None:
            with contextlib.suppress(RateLimited):
                await blocked.check("over", "reads")

        out.append(
            ("refusal of a tenant already over its limit (no Redis call)", await _per_call_us(refused, n))
        )
    finally:
        await shared.close()
    return out


async def _start_unlimited_storage(env: Environment) -> tuple[Child, str]:
    mesh = env.mesh
    assert mesh is not None
    port = free_port()
    settings = mesh.settings.model_copy(
        update={"storage_port": port, "api_rate_limits": False, "replica_index": 7}
    )
    child = await Child.start(
        ChildSpec(
            name="storage-unlimited",
            argv=python_module("services.storage"),
            log_path=env.root / "storage-unlimited.log",
            env=settings_env(settings),
        )
    )
    address = f"{settings.host}:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with direct_channel(address) as ch:
                await asyncio.wait_for(ch.channel_ready(), 1.0)
                return child, address
        except (TimeoutError, grpc.aio.AioRpcError):
            await asyncio.sleep(0.2)
    await child.stop(5)
    raise RuntimeError("the limits-off StorageService did not start")


async def _paced(
    rate_per_s: float, seconds: float, op: Callable[[], Awaitable[None]], cap: int = 64
) -> list[float]:
    """Open loop: start op() every 1/rate seconds (at most `cap` in flight); the latencies."""
    latencies: list[float] = []
    gate = asyncio.Semaphore(cap)
    tasks: list[asyncio.Task[None]] = []

    async def one() -> None:
        async with gate:
            t0 = time.perf_counter()
            await op()
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    n = int(rate_per_s * seconds)
    for i in range(n):
        delay = start + i / rate_per_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return sorted(latencies)


def _q(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, max(0, round(q * len(values)) - 1))] * 1000


async def bench_limits(cfg: Config, env: Environment) -> tuple[Table, Table]:
    mesh = env.mesh
    assert mesh is not None
    cost = Table(
        "5a. Tenant limits: the limiter's cost (issue 6)",
        ["what", "µs per call (latency)", "req/s", "vs limits off", "StorageService CPU µs/req"],
    )
    n_micro = 2000 if cfg.getitem_rounds > 1 else 300
    for name, us in await limiter_cost(n_micro):
        cost.add(name, f"{us:.0f}", "", "", "")

    tid = await create_tenant(mesh, "bench-limits")
    md = mesh.metadata(Role.MEMBER, tid)
    item = items_pb2.Item(
        collection="hot", partition_key="p", sort_key="one", attributes=item_bench.attributes(1)
    )
    request = items_pb2.GetItemRequest(tenant_id=tid, collection="hot", partition_key="p", sort_key="one")
    child, off_address = await _start_unlimited_storage(env)
    try:
        async with (
            direct_channel(mesh.address("storage")) as on_ch,
            direct_channel(off_address) as off_ch,
        ):
            on = storage_service_pb2_grpc.StorageServiceStub(on_ch)
            off = storage_service_pb2_grpc.StorageServiceStub(off_ch)
            await on.PutItem(items_pb2.PutItemRequest(tenant_id=tid, item=item), metadata=md)
            pids = {"on": mesh.server_pid("storage"), "off": child.pid}

            def op(stub: storage_service_pb2_grpc.StorageServiceStub) -> Callable[[int], Awaitable[None]]:
                async def call(i: int) -> None:
                    if (await stub.GetItem(request, metadata=md)).sort_key != "one":
                        raise AssertionError("wrong item")

                return call

            runs: dict[str, list[LoadResult]] = {"on": [], "off": []}
            for stub in (on, off):
                await run_fixed(op(stub), cfg.getitem_warmup, cfg.getitem_concurrency)
            for r in range(max(1, cfg.getitem_rounds)):
                for name in ("on", "off") if r % 2 == 0 else ("off", "on"):
                    stub = on if name == "on" else off
                    res = await run_fixed(
                        op(stub), cfg.getitem_requests, cfg.getitem_concurrency, {name: pids[name]}
                    )
                    runs[name].append(res)
                    say(f"limits {name}: {res.rps:,.0f} req/s")
    finally:
        await child.stop(10)
    base = median_result(runs["off"])
    for name, label in (
        ("off", "GetItem direct, API rate limits off"),
        ("on", "GetItem direct, API rate limits on"),
    ):
        res = median_result(runs[name])
        cost.add(
            label,
            f"{res.p50_ms * 1000:.0f} (p50)",
            rate(res.rps),
            ratio(res.rps, base.rps),
            f"{res.cpu_us_per_request(name):.0f}",
        )
    cost.notes += [
        f"Micro rows: {n_micro} sequential calls in this process after a warm-up; the Redis rows go to the "
        "machine's Redis over loopback. GetItem rows: {cfg.getitem_requests} requests at concurrency "
        f"{cfg.getitem_concurrency}, rounds alternating, the median round of each; 'limits off' is a second "
        "StorageService process on the same home and tenant directory started with "
        "MAKOTO_API_RATE_LIMITS=false. The tenant's limits are far above what the box can serve, so "
        "nothing is refused: this is the cost of checking, not of refusing.".replace(
            "{cfg.getitem_requests}", str(cfg.getitem_requests)
        ),
    ]

    # -- 5b noisy neighbour ---------------------------------------------------------------------
    noisy = Table(
        "5b. Noisy neighbour: tenant B's latency while tenant A offers 10x its limit (issue 6)",
        [
            "B's situation",
            "B req/s",
            "B p50 ms",
            "B p99 ms",
            "p50 vs alone",
            "p99 vs alone",
            "A answered 200",
            "A answered 429",
        ],
    )
    a_limit = 40.0
    b_rate = 25.0
    seconds = 8.0 if cfg.getitem_rounds > 1 else 3.0
    a = await create_tenant(mesh, "bench-noisy-a")
    b = await create_tenant(mesh, "bench-noisy-b")
    md_a, md_b = mesh.metadata(Role.MEMBER, a), mesh.metadata(Role.MEMBER, b)
    async with grpc.aio.insecure_channel(mesh.envoy_target) as ch:
        stub = storage_service_pb2_grpc.StorageServiceStub(ch)
        for t, m in ((a, md_a), (b, md_b)):
            it = items_pb2.Item(
                collection="hot", partition_key="p", sort_key="one", attributes=item_bench.attributes(1)
            )
            await stub.PutItem(items_pb2.PutItemRequest(tenant_id=t, item=it), metadata=m)
        req_a = items_pb2.GetItemRequest(tenant_id=a, collection="hot", partition_key="p", sort_key="one")
        req_b = items_pb2.GetItemRequest(tenant_id=b, collection="hot", partition_key="p", sort_key="one")
        a_codes: dict[str, int] = {}

        async def call_b() -> None:
            await stub.GetItem(req_b, metadata=md_b)

        async def call_a() -> None:
            try:
                await stub.GetItem(req_a, metadata=md_a)
                a_codes["OK"] = a_codes.get("OK", 0) + 1
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                a_codes["429"] = a_codes.get("429", 0) + 1

        alone = await _paced(b_rate, seconds, call_b)
        rows: list[tuple[str, list[float], dict[str, int]]] = [("alone", alone, {})]
        for label, limit in (
            (f"A at 10x its limit ({a_limit:.0f} req/s)", a_limit),
            ("A at the same load, no effective limit", 1e6),
        ):
            await set_limits(mesh, a, api_rps=limit)
            await asyncio.sleep(mesh.settings.limits_cache_ttl_seconds + 0.5)
            with contextlib.suppress(grpc.aio.AioRpcError):  # the first call after expiry refreshes
                await stub.GetItem(req_a, metadata=md_a)
            await asyncio.sleep(0.5)
            a_codes.clear()
            a_task = asyncio.create_task(_paced(a_limit * 10, seconds + 1, call_a, cap=128))
            await asyncio.sleep(0.5)
            with_a = await _paced(b_rate, seconds, call_b)
            await a_task
            rows.append((label, with_a, dict(a_codes)))
    for label, lat, codes in rows:
        noisy.add(
            label,
            rate(len(lat) / seconds),
            ms(_q(lat, 0.5)),
            ms(_q(lat, 0.99)),
            ratio(_q(lat, 0.5), _q(alone, 0.5)),
            ratio(_q(lat, 0.99), _q(alone, 0.99)),
            codes.get("OK", "") if codes else "",
            codes.get("429", "") if codes else "",
        )
    noisy.notes += [
        f"gRPC through Envoy, GetItem on the local SQLite store. B: {b_rate:.0f} req/s open loop "
        f"for {seconds:.0f} s. A: {a_limit * 10:.0f} req/s offered open loop (at most 128 in flight) "
        f"against a limit of {a_limit:.0f} req/s (burst {a_limit:.0f}); in the last row A's limit is "
        "raised out of reach, so A takes whatever the box gives it. Target (issue 6): B's p99 with A "
        "limited within 1.5x of B alone.",
        f"Load average at the end: {os.getloadavg()[0]:.2f}. One client process drives A and B on the "
        "same 2-core box as Envoy and the services.",
    ]
    return cost, noisy
