"""SpoolingUsageRecorder against a real MeteringService (in-process gRPC server, SQLite store):
durability across server outages and client restarts, batching, retries, close, dead letters."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc

from services.common.config import MeshSettings
from services.common.errors import InvalidArgument, Unavailable
from services.common.identity import Role
from services.common.metering_client import SpoolingUsageRecorder, spool_path
from services.common.server import ServerSpec
from services.metering.plans import FixedPlanResolver
from services.metering.server import build
from tests.support import bearer, direct_channel, running_server

WHEN = datetime(2025, 4, 2, 12, tzinfo=UTC)
TENANT = "acme"


class CountingServicer(metering_pb2_grpc.MeteringServiceServicer):
    """The real servicer, with every RecordUsage batch size noted and the first N refused."""

    def __init__(self, inner: Any, fail_first: int = 0) -> None:
        self.inner = inner
        self.fail_first = fail_first
        self.batches: list[int] = []
        self.replies: list[tuple[int, int]] = []

    async def RecordUsage(self, request: Any, context: Any) -> Any:
        self.batches.append(len(request.events))
        if self.fail_first > 0:
            self.fail_first -= 1
            raise Unavailable("metering store is restarting")
        reply = await self.inner.RecordUsage(request, context)
        self.replies.append((reply.accepted, reply.duplicates))
        return reply

    async def QueryUsage(self, request: Any, context: Any) -> Any:
        return await self.inner.QueryUsage(request, context)

    async def GetInvoice(self, request: Any, context: Any) -> Any:
        return await self.inner.GetInvoice(request, context)

    async def GetPricePlan(self, request: Any, context: Any) -> Any:
        return await self.inner.GetPricePlan(request, context)

    async def SetPricePlan(self, request: Any, context: Any) -> Any:
        return await self.inner.SetPricePlan(request, context)


def counting_build(
    counter: list[CountingServicer], fail_first: int = 0
) -> Callable[[MeshSettings], Awaitable[ServerSpec]]:
    async def _build(settings: MeshSettings) -> ServerSpec:
        spec = await build(settings, db_url=None, plans=FixedPlanResolver())
        servicer = CountingServicer(spec.registrations[0].servicer, fail_first)
        spec.registrations[0].servicer = servicer
        counter.append(servicer)
        return spec

    return _build


@asynccontextmanager
async def metering_server(settings: MeshSettings, fail_first: int = 0) -> AsyncIterator[CountingServicer]:
    counter: list[CountingServicer] = []
    async with running_server(counting_build(counter, fail_first), settings):
        yield counter[0]


def fast(recorder: SpoolingUsageRecorder) -> SpoolingUsageRecorder:
    """Short backoff so outages in tests cost milliseconds."""
    recorder.backoff_base_seconds = 0.02
    recorder.backoff_max_seconds = 0.1
    recorder.rpc_timeout_seconds = 2.0
    return recorder


async def server_rows(settings: MeshSettings, meter: str = "api_calls") -> dict[str, int]:
    """What the server stored for TENANT in April 2025: value per event (dimension n)."""
    request = metering_pb2.QueryUsageRequest(tenant_id=TENANT, meter=meter, group_by=["n"])
    request.start_time.FromDatetime(datetime(2025, 4, 1, tzinfo=UTC))
    request.end_time.FromDatetime(datetime(2025, 5, 1, tzinfo=UTC))
    async with direct_channel(settings.address("metering")) as channel:
        reply = await metering_pb2_grpc.MeteringServiceStub(channel).QueryUsage(
            request, metadata=bearer(settings, Role.PLATFORM_ADMIN)
        )
    return {row.group["n"]: row.value for row in reply.rows}


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def spool_rows(path: Path, table: str = "events") -> list[tuple[str, bytes]]:
    conn = sqlite3.connect(path)
    try:
        return [(str(i), bytes(p)) for i, p in conn.execute(f"SELECT id, payload FROM {table} ORDER BY id")]
    finally:
        conn.close()


async def record_n(recorder: SpoolingUsageRecorder, start: int, count: int) -> None:
    for i in range(start, start + count):
        await recorder.record(
            meter="api_calls",
            tenant_id=TENANT,
            value=i,
            dimensions={"n": str(i)},
            event_id=f"ev-{i}",
            time=WHEN,
        )


def expected(start: int, count: int) -> dict[str, int]:
    return {str(i): i for i in range(start, start + count)}


# ---------------------------------------------------------------------------------------------


async def test_events_recorded_while_the_server_is_down_arrive_exactly_once(settings: MeshSettings) -> None:
    recorder = fast(SpoolingUsageRecorder(settings, "storage", flush_interval=0.05))
    await recorder.start()
    try:
        await record_n(recorder, 1, 20)
        await asyncio.sleep(0.3)  # several failed delivery attempts
        assert await recorder.pending() == 20
        assert recorder.path == settings.data_dir / "spool" / "storage.sqlite3"
        async with metering_server(settings) as server:

            async def drained() -> bool:
                return await recorder.pending() == 0

            await until(drained)
            assert await server_rows(settings) == expected(1, 20)
            # every acknowledgement was a first delivery
            assert sum(a for a, _ in server.replies) == 20
            assert sum(d for _, d in server.replies) == 0
    finally:
        await recorder.close()


async def test_restart_on_the_same_spool_loses_and_duplicates_nothing(settings: MeshSettings) -> None:
    path = spool_path(settings, "llm")
    first = fast(SpoolingUsageRecorder(settings, "llm", flush_interval=0.05))
    await first.start()
    await record_n(first, 1, 10)
    await first.close()  # the server was never up
    spooled = spool_rows(path)
    assert [i for i, _ in spooled] == sorted(f"ev-{i}" for i in range(1, 11))

    async with metering_server(settings) as server:
        second = fast(SpoolingUsageRecorder(settings, "llm", flush_interval=0.05))
        await second.start()
        await record_n(second, 11, 5)
        try:

            async def all_arrived() -> bool:
                return await second.pending() == 0 and len(await server_rows(settings)) == 15

            await until(all_arrived)
        finally:
            await second.close()
        assert await server_rows(settings) == expected(1, 15)

        # A crash between the server's commit and the local delete leaves delivered events in
        # the spool: put them back and start a third recorder. They go again, as duplicates.
        conn = sqlite3.connect(path)
        with conn:
            conn.executemany("INSERT INTO events (id, payload) VALUES (?, ?)", spooled)
        conn.close()
        server.replies.clear()
        third = fast(SpoolingUsageRecorder(settings, "llm", flush_interval=0.05))
        await third.start()
        try:

            async def redelivered() -> bool:
                return await third.pending() == 0

            await until(redelivered)
        finally:
            await third.close()
        assert sum(d for _, d in server.replies) == 10
        assert sum(a for a, _ in server.replies) == 0
        assert await server_rows(settings) == expected(1, 15)
    assert spool_rows(path) == []


async def test_batches_respect_batch_size(settings: MeshSettings) -> None:
    async with metering_server(settings) as server:
        # A long flush interval: only a full batch (or close) triggers a send.
        recorder = fast(SpoolingUsageRecorder(settings, "storage", flush_interval=30, batch_size=4))
        await recorder.start()
        try:
            await record_n(recorder, 1, 10)

            async def two_batches_in() -> bool:
                return sum(server.batches) >= 8

            await until(two_batches_in, timeout=5)

            # The client deletes a batch once the server's reply is in: that can come a moment
            # after the server counted it (seen on a busy box), so wait for it.
            async def acknowledged_ones_deleted() -> bool:
                return await recorder.pending() == 10 - sum(server.batches)

            await until(acknowledged_ones_deleted, timeout=5)
            assert await recorder.pending() == 10 - sum(server.batches)
        finally:
            await recorder.close()  # flushes the rest
        assert all(size <= 4 for size in server.batches)
        assert len(server.batches) >= 3
        assert sum(server.batches) == 10
        assert await server_rows(settings) == expected(1, 10)


async def test_a_wake_sends_full_batches_and_the_rest_waits_for_the_interval(
    settings: MeshSettings,
) -> None:
    """Under load only full batches go at once (many small RecordUsage calls cost MeteringService
    more per event than the events); the remainder goes with the next batch, at the flush
    interval, or when delivered() asks for everything."""
    async with metering_server(settings) as server:
        recorder = fast(SpoolingUsageRecorder(settings, "storage", flush_interval=30, batch_size=50))
        await recorder.start()
        try:
            await record_n(recorder, 1, 120)

            async def two_full_batches() -> bool:
                return sum(server.batches) >= 100 and await recorder.pending() == 20

            await until(two_full_batches, timeout=5)
            await asyncio.sleep(0.3)  # nothing else goes while less than a batch waits
            assert server.batches == [50, 50]
            await asyncio.wait_for(recorder.delivered(), 5)
            assert server.batches == [50, 50, 20]
            assert await recorder.pending() == 0
        finally:
            await recorder.close()
        assert await server_rows(settings) == expected(1, 120)


async def test_failed_sends_are_retried_without_loss(settings: MeshSettings) -> None:
    async with metering_server(settings, fail_first=3) as server:
        recorder = fast(SpoolingUsageRecorder(settings, "storage", flush_interval=0.05, batch_size=50))
        await recorder.start()
        try:
            await record_n(recorder, 1, 7)

            async def delivered() -> bool:
                return await recorder.pending() == 0

            await until(delivered)
        finally:
            await recorder.close()
        assert len(server.batches) >= 4  # three refused attempts, then success
        assert await server_rows(settings) == expected(1, 7)


async def test_concurrent_records_are_all_spooled(settings: MeshSettings) -> None:
    recorder = SpoolingUsageRecorder(settings, "storage")
    try:
        await asyncio.gather(
            *(
                recorder.record(meter="api_calls", tenant_id=TENANT, value=1, dimensions={"n": str(i)})
                for i in range(300)
            )
        )
        # ids default to distinct uuid4s
        assert await recorder.pending() == 300
    finally:
        await recorder.close()
    assert len({i for i, _ in spool_rows(spool_path(settings, "storage"))}) == 300


async def test_close_is_bounded_and_keeps_undelivered_events(settings: MeshSettings) -> None:
    recorder = fast(SpoolingUsageRecorder(settings, "storage", flush_interval=0.05))
    recorder.close_timeout_seconds = 0.5
    await recorder.start()
    await record_n(recorder, 1, 5)
    started = time.monotonic()
    await recorder.close()
    assert time.monotonic() - started < 2.0
    assert len(spool_rows(spool_path(settings, "storage"))) == 5
    # A call that ends after close (cut at a shutdown's grace deadline) is still spooled,
    # for the next start to send.
    await record_n(recorder, 6, 1)
    assert [i for i, _ in spool_rows(spool_path(settings, "storage"))] == [f"ev-{i}" for i in range(1, 7)]


async def test_record_refuses_invalid_events(settings: MeshSettings) -> None:
    recorder = SpoolingUsageRecorder(settings, "storage")
    try:
        with pytest.raises(InvalidArgument):
            await recorder.record(meter="api_calls", tenant_id="Not A Tenant", value=1)
        with pytest.raises(InvalidArgument):
            await recorder.record(meter="API Calls", tenant_id=TENANT, value=1)
        with pytest.raises(InvalidArgument):
            await recorder.record(meter="api_calls", tenant_id=TENANT, value=1, dimensions={"Bad Key": "x"})
        with pytest.raises(InvalidArgument):
            await recorder.record(
                meter="api_calls", tenant_id=TENANT, value=1, time=datetime(1969, 12, 31, tzinfo=UTC)
            )
        assert await recorder.pending() == 0
        await recorder.record(meter="api_calls", tenant_id=TENANT, value=1, event_id="same")
        await recorder.record(meter="api_calls", tenant_id=TENANT, value=2, event_id="same")
        assert await recorder.pending() == 1  # the spool is idempotent by id too
    finally:
        await recorder.close()


async def test_an_event_the_server_refuses_is_set_aside_not_lost(settings: MeshSettings) -> None:
    # An older client spooled an event today's server refuses (the client's own check would not
    # let it in now, so it is written to the spool directly).
    bad = metering_pb2.UsageEvent(id="bad-1", source="storage", type="api_calls", subject="X", value=1)
    bad.time.FromDatetime(WHEN)
    recorder = fast(SpoolingUsageRecorder(settings, "storage", flush_interval=0.05))
    await record_n(recorder, 1, 2)  # spooled before start
    conn = sqlite3.connect(recorder.path)
    with conn:
        conn.execute("INSERT INTO events (id, payload) VALUES (?, ?)", ("bad-1", bad.SerializeToString()))
    conn.close()
    await record_n(recorder, 3, 2)
    async with metering_server(settings):
        await recorder.start()
        try:

            async def drained() -> bool:
                return await recorder.pending() == 0

            await until(drained)
            assert await server_rows(settings) == expected(1, 4)
        finally:
            await recorder.close()
    dead = spool_rows(recorder.path, "dead_letters")
    assert [i for i, _ in dead] == ["bad-1"]
    assert metering_pb2.UsageEvent.FromString(dead[0][1]) == bad


async def test_delivered_waits_for_what_was_spooled_before_not_after(settings: MeshSettings) -> None:
    """The storage reconciler's barrier: it returns once the events spooled before the call are
    acknowledged, even while newer events keep arriving (it never waits for an empty spool)."""
    recorder = fast(SpoolingUsageRecorder(settings, "storage", flush_interval=30, batch_size=1000))
    await recorder.start()
    try:
        await record_n(recorder, 1, 5)
        with pytest.raises(TimeoutError):  # no MeteringService yet: nothing is acknowledged
            async with asyncio.timeout(0.5):
                await recorder.delivered()
        async with metering_server(settings):
            barrier = asyncio.create_task(recorder.delivered())
            await record_n(recorder, 6, 3)  # after the barrier: not waited for
            async with asyncio.timeout(10):
                await barrier
            rows = await server_rows(settings)
            assert all(rows.get(k) == v for k, v in expected(1, 5).items()), rows
    finally:
        await recorder.close()
