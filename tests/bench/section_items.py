"""Section 4 (issue 3): item operations through StorageService vs each backend's SDK direct."""

from __future__ import annotations

import os
from typing import Any

from makoto.storage.v1 import storage_service_pb2_grpc
from makoto.tenant.v1 import tenant_pb2

from services.common.identity import Role
from tests.bench import items as item_bench
from tests.bench.harness import Config, Environment, bounded, say
from tests.bench.load import LoadResult, median_result, run_fixed
from tests.bench.report import Table, ms, rate, ratio
from tests.bench.tenants import create_tenant, store_secret, tenant_id
from tests.support import direct_channel

DIRECT_CALLS = {
    "sqlite": "aiosqlite: INSERT OR REPLACE / SELECT by key / range SELECT LIMIT 11 (same schema, WAL)",
    "postgres": "asyncpg pool (5): INSERT .. ON CONFLICT DO UPDATE / SELECT by key / range SELECT LIMIT 11",
    "dynamodb": "aioboto3: put_item / get_item (consistent) / query begins_with Limit 11",
    "cosmos": "azure-cosmos aio: upsert_item / read_item / SELECT TOP 11 .. STARTSWITH .. ORDER BY",
}


async def _item_backend(
    cfg: Config,
    env: Environment,
    stub: storage_service_pb2_grpc.StorageServiceStub,
    backend: str,
    table: Table,
) -> None:
    mesh = env.mesh
    assert mesh is not None
    direct: Any
    if backend == "sqlite":
        tid = await create_tenant(mesh, "bench-sqlite")
        direct = item_bench.DirectSqlite(str(env.root / "direct-items.sqlite3"))
    elif backend == "postgres":
        assert env.pg_dsn is not None
        binding = tenant_pb2.ItemStoreBinding(
            backend=tenant_pb2.ITEM_BACKEND_POSTGRES, endpoint=env.pg_dsn, options={"auto_provision": "true"}
        )
        tid = await create_tenant(
            mesh, "bench-pg", cloud=tenant_pb2.CLOUD_PROVIDER_CUSTOM, item_store=binding
        )
        direct = item_bench.DirectPostgres(env.pg_dsn)
    elif backend == "dynamodb":
        tid = tenant_id("bench-ddb")
        ref = store_secret(mesh, "bench-dynamodb", "bench-key:bench-secret", tid)
        binding = tenant_pb2.ItemStoreBinding(
            backend=tenant_pb2.ITEM_BACKEND_DYNAMODB,
            endpoint=env.moto.endpoint,
            region="us-east-1",
            credentials_secret_ref=ref,
            options={"auto_provision": "true"},
        )
        tid = await create_tenant(
            mesh, "bench-ddb", tid=tid, cloud=tenant_pb2.CLOUD_PROVIDER_AWS, item_store=binding
        )
        direct = item_bench.DirectDynamo(env.moto.endpoint, "bench-key", "bench-secret")
    else:
        from tests.contract.item_emulators import COSMOS_EMULATOR_KEY

        tid = tenant_id("bench-cosmos")
        ref = store_secret(mesh, "bench-cosmos", COSMOS_EMULATOR_KEY, tid)
        binding = tenant_pb2.ItemStoreBinding(
            backend=tenant_pb2.ITEM_BACKEND_COSMOS,
            endpoint=env.cosmos.endpoint,
            credentials_secret_ref=ref,
            options={"connection_verify": "false", "auto_provision": "true"},
        )
        tid = await create_tenant(
            mesh, "bench-cosmos", tid=tid, cloud=tenant_pb2.CLOUD_PROVIDER_AZURE, item_store=binding
        )
        direct = item_bench.DirectCosmos(env.cosmos.endpoint, COSMOS_EMULATOR_KEY)
    service = item_bench.ServiceItems(stub, mesh.metadata(Role.MEMBER, tid), tid)
    n, conc, warm = cfg.item_ops[backend], cfg.item_concurrency, cfg.item_warmup
    rounds = cfg.item_rounds[backend]
    storage_pid = mesh.server_pid("storage")
    await direct.open()
    try:
        for op_name, method in (("PutItem", "put"), ("GetItem", "get"), ("QueryItems", "query")):
            via, base = getattr(service, method), getattr(direct, method)
            await run_fixed(via, max(warm, item_bench.PAGE + 1), conc)  # also builds the adapter / table
            await run_fixed(base, max(warm, item_bench.PAGE + 1), conc)
            service_runs: list[LoadResult] = []
            direct_runs: list[LoadResult] = []
            for r in range(rounds):
                # Alternate which side goes first, so drift on the box hits both alike.
                sides = [(via, service_runs, "storage"), (base, direct_runs, "client")]
                for op, runs, who in sides if r % 2 == 0 else list(reversed(sides)):
                    pid = storage_pid if who == "storage" else os.getpid()
                    runs.append(await run_fixed(op, n, conc, {who: pid}))
            s, d = median_result(service_runs), median_result(direct_runs)
            say(f"{backend} {op_name}: {s.rps:,.0f} ops/s via service, {d.rps:,.0f} ops/s direct")
            table.add(
                backend,
                op_name,
                n,
                rate(s.rps),
                rate(d.rps),
                ratio(s.rps, d.rps),
                ms(s.p50_ms),
                ms(d.p50_ms),
                f"{s.cpu_us_per_request('storage'):.0f}",
                f"{d.cpu_us_per_request('client'):.0f}",
            )
    finally:
        await direct.close()


async def bench_items(cfg: Config, env: Environment) -> Table:
    mesh = env.mesh
    assert mesh is not None
    table = Table(
        "4. Items per backend: through StorageService vs the direct SDK call (issue 3)",
        [
            "backend",
            "operation",
            "ops",
            "via StorageService ops/s",
            "direct ops/s",
            "ratio (service / direct)",
            "service p50 ms",
            "direct p50 ms",
            "StorageService CPU µs/op",
            "direct client CPU µs/op",
        ],
    )
    async with direct_channel(mesh.address("storage")) as channel:
        stub = storage_service_pb2_grpc.StorageServiceStub(channel)
        for backend in ("sqlite", "postgres", "dynamodb", "cosmos"):
            if backend in env.missing:
                table.add(backend, "all", "", f"not measured: {env.missing[backend]}")
                continue
            before = len(table.rows)
            reason = await bounded(_item_backend(cfg, env, stub, backend, table), cfg.backend_timeout_s)
            if reason:
                done = {row[1] for row in table.rows[before:]}
                left = [op for op in ("PutItem", "GetItem", "QueryItems") if op not in done]
                table.add(backend, ", ".join(left), "", reason)
    table.notes += [
        f"Concurrency {cfg.item_concurrency}; each operation: warm-up, then the fixed count through the "
        "service (gRPC direct to the storage port, member token) and the same count direct, in rounds ("
        + ", ".join(f"{b} {r}" for b, r in cfg.item_rounds.items())
        + ") with the side going first alternating; each cell is the round with the median ops/s. PutItem "
        "writes distinct sort keys item-000000.. (unconditional put); GetItem reads them back; QueryItems "
        f"asks one partition for sort-key prefix `{item_bench.QUERY_PREFIX}`, a page of {item_bench.PAGE} "
        "(both sides fetch 11 rows).",
        "The service path adds gRPC + JWT verification + protovalidate + the tenant-directory lookup "
        "(cached) + one usage event per call (local spool) + attribute encoding. The adapters may use "
        "other calls than the baseline for the same contract: DynamoDB PutItem is update_item with "
        "ReturnValues=ALL_NEW (to keep the create time), Cosmos PutItem is create_item, then patch_item "
        "if the item exists.",
        "Direct calls: "
        + "; ".join(f"**{name}**: {call}" for name, call in DIRECT_CALLS.items())
        + ". StorageService CPU µs/op: the storage server's CPU time over the service run / ops; direct "
        "client CPU µs/op: this process's CPU time over the direct run / ops (the same SDK doing the same "
        "call, plus the load loop), so the two compare the work per operation whatever the box was doing.",
    ]
    return table
