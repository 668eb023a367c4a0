"""Section 1 (issue 2): GetItem direct to StorageService vs through Envoy over gRPC and REST."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import grpc
import httpx
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

from services.common.identity import Role
from tests.bench import items as item_bench
from tests.bench.echo import EchoProcess
from tests.bench.harness import Config, Environment, say
from tests.bench.load import LoadResult, median_result, run_fixed, spread
from tests.bench.report import Table, ms, rate, ratio
from tests.bench.tenants import create_tenant
from tests.support import direct_channel, free_port


async def bench_getitem(cfg: Config, env: Environment) -> Table:
    mesh = env.mesh
    assert mesh is not None
    table = Table(
        "1. GetItem: direct to StorageService vs through Envoy (issue 2)",
        [
            "path",
            "requests",
            "concurrency",
            "req/s",
            "p50 ms",
            "p99 ms",
            "req/s vs direct",
            "p50 vs direct",
            "p99 vs direct",
            "req/s vs echo",
            "StorageService CPU µs/req",
            "MeteringService CPU µs/req",
            "TenantService CPU µs/req",
            "Envoy CPU µs/req",
            "all servers CPU µs/req",
            "client CPU µs/req",
        ],
    )
    echo = EchoProcess(mesh.settings.host, free_port())
    try:
        return await _bench(cfg, env, table, echo)
    finally:
        echo.stop()


async def _bench(cfg: Config, env: Environment, table: Table, echo: EchoProcess) -> Table:
    mesh = env.mesh
    assert mesh is not None
    n, conc = cfg.getitem_requests, cfg.getitem_concurrency
    watch = {
        "storage": mesh.server_pid("storage"),
        "metering": mesh.server_pid("metering"),
        "tenant": mesh.server_pid("tenant"),
        "envoy": mesh.envoy_pid(),
        "echo": echo.pid,
        "client": os.getpid(),
    }
    tid = await create_tenant(mesh, "bench-hot")
    md = mesh.metadata(Role.MEMBER, tid)
    request = items_pb2.GetItemRequest(tenant_id=tid, collection="hot", partition_key="p", sort_key="one")
    url = f"/api/v1/tenants/{tid}/collections/hot/partitions/p/items/one"
    async with (
        grpc.aio.insecure_channel(echo.address) as echo_ch,
        direct_channel(mesh.address("storage")) as direct_ch,
        grpc.aio.insecure_channel(mesh.envoy_target) as envoy_ch,
        httpx.AsyncClient(
            base_url=mesh.base_url,
            headers=dict(md),
            limits=httpx.Limits(max_connections=conc, max_keepalive_connections=conc),
            timeout=30.0,
        ) as rest,
    ):
        direct = storage_service_pb2_grpc.StorageServiceStub(direct_ch)
        envoy = storage_service_pb2_grpc.StorageServiceStub(envoy_ch)
        item = items_pb2.Item(
            collection="hot", partition_key="p", sort_key="one", attributes=item_bench.attributes(1)
        )
        await direct.PutItem(items_pb2.PutItemRequest(tenant_id=tid, item=item), metadata=md)

        def grpc_op(stub: storage_service_pb2_grpc.StorageServiceStub) -> Callable[[int], Awaitable[None]]:
            async def op(i: int) -> None:
                got = await stub.GetItem(request, metadata=md)
                if got.sort_key != "one":
                    raise AssertionError("GetItem returned another item")

            return op

        async def rest_op(i: int) -> None:
            r = await rest.get(url)
            if r.status_code != 200 or r.json().get("sortKey") != "one":
                raise AssertionError(f"REST GetItem: {r.status_code} {r.text[:200]}")

        paths: list[tuple[str, Callable[[int], Awaitable[None]]]] = [
            ("gRPC direct to StorageService", grpc_op(direct)),
            (
                "bare grpc.aio echo (baseline, same messages)",
                grpc_op(storage_service_pb2_grpc.StorageServiceStub(echo_ch)),
            ),
            ("gRPC through Envoy", grpc_op(envoy)),
            ("REST through Envoy (httpx, HTTP/1.1 keep-alive)", rest_op),
        ]
        for _, op in paths:
            await run_fixed(op, cfg.getitem_warmup, conc)
        results: dict[str, list[LoadResult]] = {name: [] for name, _ in paths}
        for r in range(cfg.getitem_rounds):
            order = paths[r % len(paths) :] + paths[: r % len(paths)]
            for name, op in order:
                res = await run_fixed(op, n, conc, watch)
                results[name].append(res)
                say(f"GetItem round {r + 1}: {name}: {res.rps:,.0f} req/s, p50 {res.p50_ms:.2f} ms")
    base = median_result(results[paths[0][0]])
    echo_rps = median_result(results[paths[1][0]]).rps
    for name, _ in paths:
        res = median_result(results[name])
        servers = sum(res.cpu_us_per_request(p) for p in ("storage", "metering", "tenant", "envoy", "echo"))
        table.add(
            name,
            res.requests,
            res.concurrency,
            rate(res.rps),
            ms(res.p50_ms),
            ms(res.p99_ms),
            ratio(res.rps, base.rps),
            ratio(res.p50_ms, base.p50_ms),
            ratio(res.p99_ms, base.p99_ms),
            ratio(res.rps, echo_rps),
            f"{res.cpu_us_per_request('storage'):.0f}",
            f"{res.cpu_us_per_request('metering'):.0f}",
            f"{res.cpu_us_per_request('tenant'):.0f}",
            f"{res.cpu_us_per_request('envoy'):.0f}",
            f"{servers:.0f}",
            f"{res.cpu_us_per_request('client'):.0f}",
        )
    spreads = ", ".join(f"{name.split(' (')[0]} {spread(results[name]):.0%}" for name, _ in paths)
    table.notes += [
        f"Same item (~250 B, 6 attributes), same member token, {n} requests per path at concurrency "
        f"{conc} after {cfg.getitem_warmup} warm-up requests; {cfg.getitem_rounds} rounds with the path "
        "order rotated, each row is the round with the median req/s (whole round, not mixed). Spread of "
        f"req/s between rounds (max-min)/median: {spreads}.",
        "One client process (this script) drives the load on the same 2-core box as the services and Envoy; "
        "gRPC paths use one HTTP/2 channel, REST uses up to "
        f"{conc} keep-alive HTTP/1.1 connections. Both Envoy paths verify the JWT in Envoy and again in "
        "StorageService; all three go through the service's auth, validation, metering and the "
        "tenant-directory cache.",
        "CPU µs/req: user+system CPU time over the round (psutil) of each server process and of this "
        "client process, divided by the requests: where the time goes, whatever else the box was doing. "
        "The storage server's share includes its background work meanwhile (usage spool and sending usage "
        "to MeteringService); MeteringService's is storing those api_calls events; 'all servers' adds "
        "StorageService, MeteringService, TenantService, Envoy and the echo server.",
        "Echo: a bare grpc.aio server in its own process answering the same GetItem with a fixed Item (no "
        "interceptor, auth, limits, metering or store; tests/bench/echo.py), driven by the same client: "
        "'req/s vs echo' is the platform's whole pipeline against grpc.aio's own floor.",
    ]
    return table
