"""Section 8 (issue 8): durable usage ingest, events/s and CPU per event.

8a. RecordUsage batches (1,000 events each, several in flight) straight to one MeteringService
    process, on SQLite and on PostgreSQL. "Durable": an event counts once the server answered,
    i.e. after its transaction committed. Server CPU is the MeteringService process's own
    user+system time (from /proc) over the run, divided by the events.
8b. End to end through the default transport: a producer records events one by one through
    SpoolingUsageRecorder (each committed to its SQLite spool first), the spool's sender batches
    them to RecordUsage, MeteringService stores them on PostgreSQL. Timed until the last event is
    in the database; CPU is producer + MeteringService.
8c. The same through JetStream (MAKOTO_USAGE_TRANSPORT=jetstream, the machine's NATS at
    127.0.0.1:4222, a private stream deleted afterwards): spool -> JetStream -> MeteringService's
    pull consumer -> PostgreSQL.

Every row is checked: the database holds exactly the events sent (count and sum), else the
row says so instead of a number.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import nats
import orjson
import sqlalchemy as sa
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc

from services.common.config import MeshSettings
from services.common.identity import Role
from services.common.usage import API_CALLS
from services.common.usage_jetstream import usage_recorder
from services.mesh.processes import settings_env
from services.metering.adapters.database import create_engine
from services.metering.adapters.sql_store import pg_insert
from services.metering.usage_columns import UsageColumns
from tests.bench.harness import Config, Environment, bounded, say
from tests.bench.report import Table, rate, ratio
from tests.support import bearer, direct_channel, make_settings

NATS_URL = os.environ.get("MAKOTO_BENCH_NATS_URL", "nats://127.0.0.1:4222")
BATCH = 1000
IN_FLIGHT = 4
ROUNDS = 3
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    events: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu_seconds / self.events * 1e6


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.asynccontextmanager
async def _metering(settings: MeshSettings, db_url: str, log: Path) -> AsyncIterator[int]:
    """A MeteringService process (`python -m services.metering`); yields its pid."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKOTO_")}
    env.update(settings_env(settings))
    env.update({"MAKOTO_METERING_DB_URL": db_url, "MAKOTO_LOG_LEVEL": "WARNING"})
    with open(log, "ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.metering",
            env=env,
            stdout=out,
            stderr=out,
            stdin=asyncio.subprocess.DEVNULL,
        )
    try:
        for _ in range(600):
            if proc.returncode is not None:
                raise RuntimeError(f"MeteringService exited {proc.returncode}; see {log}")
            try:
                _, writer = await asyncio.open_connection(settings.host, settings.metering_port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield proc.pid
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _requests(tenant: str, count: int) -> list[metering_pb2.RecordUsageRequest]:
    out = []
    for start in range(0, count, BATCH):
        events = []
        for i in range(start, min(count, start + BATCH)):
            e = metering_pb2.UsageEvent(
                id=f"{tenant}-{i}",
                source="bench",
                type=API_CALLS,
                subject=tenant,
                value=1,
                dimensions={"method": "/makoto.storage.v1.StorageService/GetItem", "status": "OK"},
            )
            e.time.GetCurrentTime()
            events.append(e)
        out.append(metering_pb2.RecordUsageRequest(events=events))
    return out


async def _stored(db_url: str, tenant: str) -> tuple[int, int]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.text("SELECT count(*), coalesce(sum(value), 0) FROM usage_events WHERE subject = :t"),
                    {"t": tenant},
                )
            ).one()
        return int(row[0]), int(row[1])
    finally:
        await engine.dispose()


async def _wait_stored(db_url: str, tenant: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (got := await _stored(db_url, tenant)) != (count, count):
        if time.monotonic() > deadline:
            raise RuntimeError(f"stored {got}, expected ({count}, {count})")
        await asyncio.sleep(0.05)


async def _record_usage(settings: MeshSettings, db_url: str, pid: int, count: int) -> Result:
    md = bearer(settings, Role.SERVICE)
    async with direct_channel(settings.address("metering")) as channel:
        stub = metering_pb2_grpc.MeteringServiceStub(channel)
        # Warm-up (schema, connection pool, code paths), not counted.
        for req in _requests(f"t-warm-{uuid.uuid4().hex[:8]}", 2 * BATCH):
            await stub.RecordUsage(req, metadata=md)
        tenant = f"t-ingest-{uuid.uuid4().hex[:8]}"
        queue = _requests(tenant, count)
        accepted = 0

        async def worker() -> None:
            nonlocal accepted
            while queue:
                reply = await stub.RecordUsage(queue.pop(), metadata=md, timeout=60)
                accepted += reply.accepted

        cpu0, t0 = _proc_cpu(pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        seconds, cpu = time.perf_counter() - t0, _proc_cpu(pid) - cpu0
    if accepted != count:
        raise RuntimeError(f"server accepted {accepted} of {count}")
    await _wait_stored(db_url, tenant, count, 10)
    return Result(count, seconds, cpu)


def _columns(tenant: str, count: int) -> list[UsageColumns]:
    """The rows _requests() sends, prebuilt as the columns the store's statement binds."""
    dims = orjson.dumps({"method": "/makoto.storage.v1.StorageService/GetItem", "status": "OK"}).decode()
    now_us = time.time_ns() // 1000
    out = []
    for start in range(0, count, BATCH):
        ids = [f"{tenant}-{i}" for i in range(start, min(count, start + BATCH))]
        n = len(ids)
        out.append(
            UsageColumns(ids, ["bench"] * n, [API_CALLS] * n, [tenant] * n, [now_us] * n, [1] * n, [dims] * n)
        )
    return out


async def _direct(pg_dsn: str, count: int, *, copy: bool) -> Result:
    """Baselines in this process, no gRPC and no service: the same batches through asyncpg with
    IN_FLIGHT connections. copy=False: the store's own statement (pg_insert: same idempotence,
    same commit per batch); copy=True: COPY (binary) into a scratch table shaped like
    usage_events, no conflict handling at all (the floor of moving the rows in)."""
    tenant = f"t-direct-{uuid.uuid4().hex[:8]}"
    queue = _columns(tenant, count)
    scratch = f"bench_copy_{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(pg_dsn, min_size=IN_FLIGHT, max_size=IN_FLIGHT)
    try:
        if copy:
            await pool.execute(f"CREATE TABLE {scratch} (LIKE usage_events INCLUDING ALL)")
        now = time.time_ns() // 1000
        stored = 0

        async def worker() -> None:
            nonlocal stored
            while queue:
                cols = queue.pop()
                if copy:
                    records = cols.rows(now)
                    await pool.copy_records_to_table(scratch, records=records)
                    stored += len(records)
                else:
                    sql, args = pg_insert(cols, now)
                    status = await pool.execute(sql, *args)
                    stored += int(status.rsplit(" ", 1)[1])  # "INSERT 0 <n>"

        cpu0, t0 = _own_cpu(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        seconds, cpu = time.perf_counter() - t0, _own_cpu() - cpu0
        if stored != count:
            raise RuntimeError(f"stored {stored} of {count}")
        if copy:
            await pool.execute(f"DROP TABLE {scratch}")
        else:
            await pool.execute("DELETE FROM usage_events WHERE subject = $1", tenant)
    finally:
        await pool.close()
    return Result(count, seconds, cpu)


async def _end_to_end(settings: MeshSettings, db_url: str, pid: int, count: int) -> Result:
    """Producer in this process: record() each event (spool commit), sender delivers."""
    # The source is the producer's mesh identity (its mTLS certificate to MeteringService) and
    # its spool's name: the producer stands in for StorageService, in this section's own home.
    recorder = usage_recorder(settings, "storage", flush_interval=0.05, batch_size=BATCH)
    await recorder.start()
    tenant = f"t-e2e-{uuid.uuid4().hex[:8]}"
    try:
        cpu0, mcpu0, t0 = _own_cpu(), _proc_cpu(pid), time.perf_counter()
        for start in range(0, count, 200):
            await asyncio.gather(
                *(
                    recorder.record(meter=API_CALLS, tenant_id=tenant, value=1, event_id=f"{tenant}-{i}")
                    for i in range(start, min(count, start + 200))
                )
            )
        await _wait_stored(db_url, tenant, count, 300)
        seconds = time.perf_counter() - t0
        cpu = _own_cpu() - cpu0 + _proc_cpu(pid) - mcpu0
    finally:
        await recorder.close()
    return Result(count, seconds, cpu)


async def bench_ingest(cfg: Config, env: Environment) -> Table:
    table = Table(
        "8. Durable usage ingest (issue 8)",
        ["path", "store", "events", "events/s", "CPU µs/event", "events/s vs same statement direct", "note"],
    )
    root = env.root / "ingest"
    root.mkdir(parents=True, exist_ok=True)
    n_batch = cfg.ingest_events
    n_e2e = cfg.ingest_e2e_events
    stores = [("SQLite", f"sqlite+aiosqlite:///{(root / 'metering.sqlite3').resolve()}")]
    if env.pg_dsn:
        stores.append(("PostgreSQL", env.pg_dsn.replace("postgresql://", "postgresql+asyncpg://", 1)))
    else:
        table.add("RecordUsage", "PostgreSQL", "", "", "", "", env.missing.get("postgres", "not reached"))

    async def measure(run: Any) -> Result | str:
        results: list[Result] = []

        async def go() -> None:
            results.append(await run)

        why = await bounded(go(), cfg.backend_timeout_s)
        return results[0] if why is None and results else (why or "no result")

    def add(
        label: str, store: str, r: Result | str, base: Result | str | None = None, note: str = ""
    ) -> None:
        if isinstance(r, str):
            table.add(label, store, "", "", "", "", r)
            return
        vs = ratio(r.per_second, base.per_second) if isinstance(base, Result) else ""
        table.add(label, store, f"{r.events:,}", rate(r.per_second), f"{r.cpu_us:.1f}", vs, note)

    def median(results: list[Result | str]) -> Result | str:
        good = sorted((r for r in results if isinstance(r, Result)), key=lambda r: r.per_second)
        return good[len(good) // 2] if good else next(iter(results), "no result")

    label = f"RecordUsage, {BATCH:,}-event batches"
    for store, url in stores:
        settings = make_settings(root / f"home-{store.lower()}")
        async with _metering(settings, url, root / f"metering-{store.lower()}.log") as pid:
            if store == "SQLite":
                say(f"8a RecordUsage -> {store} ({n_batch:,} events) ...")
                add(label, store, await measure(_record_usage(settings, url, pid, n_batch)))
                continue
            # PostgreSQL, the target: rounds of the service and the two asyncpg baselines in
            # rotated order, the median round of each (the box is shared; see the notes).
            dsn = env.pg_dsn or ""
            paths: dict[str, list[Result | str]] = {"service": [], "statement": [], "copy": []}
            for rnd in range(ROUNDS):
                order = list(paths)[rnd % 3 :] + list(paths)[: rnd % 3]
                for path in order:
                    say(f"8a round {rnd + 1}/{ROUNDS}: {path} -> {store} ({n_batch:,} events) ...")
                    if path == "service":
                        run: Any = _record_usage(settings, url, pid, n_batch)
                    else:
                        run = _direct(dsn, n_batch, copy=path == "copy")
                    paths[path].append(await measure(run))
            base = median(paths["statement"])
            add(label, store, median(paths["service"]), base)
            add(
                "baseline: asyncpg direct, the store's INSERT ... unnest statement, prebuilt columns",
                store,
                base,
                base,
                "CPU: this client process",
            )
            add(
                "baseline: asyncpg COPY (binary) into a scratch table, no conflict handling",
                store,
                median(paths["copy"]),
                base,
                "CPU: this client process",
            )
            say(f"8b spool end to end -> {store} ({n_e2e:,} events) ...")
            add(
                "spool end to end (record -> spool -> RecordUsage)",
                store,
                await measure(_end_to_end(settings, url, pid, n_e2e)),
            )

    pg = next((url for store, url in stores if store == "PostgreSQL"), None)
    if pg is not None:
        tag = uuid.uuid4().hex[:8]
        settings = make_settings(
            root / "home-jetstream",
            nats_url=NATS_URL,
            usage_transport="jetstream",
            usage_stream=f"BENCH_USAGE_{tag}",
            usage_subject=f"makoto-bench-{tag}.usage",
        )
        say(f"8c JetStream end to end -> PostgreSQL ({n_e2e:,} events) ...")
        try:
            async with _metering(settings, pg, root / "metering-jetstream.log") as pid:
                add(
                    "JetStream end to end (record -> spool -> JetStream -> consumer)",
                    "PostgreSQL",
                    await measure(_end_to_end(settings, pg, pid, n_e2e)),
                )
        finally:
            with contextlib.suppress(Exception):
                nc = await nats.connect(NATS_URL, connect_timeout=2)
                try:
                    await nc.jetstream().delete_stream(settings.usage_stream)
                finally:
                    await nc.close()
    table.notes += [
        f"RecordUsage: {IN_FLIGHT} requests of {BATCH:,} events in flight on one channel; a batch is one "
        "transaction (PostgreSQL: one INSERT ... SELECT FROM unnest(string_to_array($1, ...), ...) "
        "ON CONFLICT DO NOTHING, each column sent as one joined string, the count from the command tag, "
        "through asyncpg directly; SQLite: executemany INSERT OR IGNORE). The request is read into those "
        "columns in one pass and the proto's rules are checked on them (services/metering/usage_columns.py). "
        "CPU: MeteringService's user+system time per event (the client's and PostgreSQL's own are excluded).",
        f"PostgreSQL: {ROUNDS} rounds of the service and of both baselines, order rotated, the median round "
        "of each. Baselines run in this process with no gRPC and no service: the same batches, prebuilt, "
        f"through an asyncpg pool of {IN_FLIGHT} ({IN_FLIGHT} in flight): the store's own statement (same "
        "idempotence and commit per batch: the floor for this schema), and binary COPY into a scratch "
        "table with the same columns and primary key (no idempotence: the floor of moving rows in). "
        "'vs same statement direct' = events/s over the statement baseline's, same run.",
        "End to end: events recorded one by one (200 concurrent record() calls) in this process; timed until "
        "the last is in the database. CPU: producer + MeteringService per event.",
        "Target (issue 8): >= 50,000 events/s durable on PostgreSQL from one MeteringService process "
        "(published anchor: Lago, 10k events/s on PostgreSQL).",
        f"Load average at the end of the section: {os.getloadavg()[0]:.1f} (2 cores shared by the client, "
        "MeteringService, PostgreSQL and whatever else runs: events/s falls with the load, CPU per event "
        "much less).",
    ]
    return table
