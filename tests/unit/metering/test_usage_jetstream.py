"""The JetStream usage transport on the machine's NATS JetStream (127.0.0.1:4222) and PostgreSQL.

Drill: two producer processes and two MeteringService processes (real `python -m
services.metering`, consuming one durable consumer); kill -9 one producer and one MeteringService
under load. Every event is stored exactly once. Each run uses its own stream and subject and
deletes the stream at the end."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
import pytest
from makoto.metering.v1 import metering_pb2

from services.common.config import MeshSettings
from services.common.usage_jetstream import MSG_ID_HEADER, ensure_stream
from services.metering.adapters.sql_store import SqlMeteringStore
from services.metering.metering import Metering
from services.metering.plans import FixedPlanResolver
from services.metering.usage_consumer import JetStreamUsageConsumer
from tests.support import free_port, make_settings

NATS_URL = os.environ.get("MAKOTO_TEST_NATS_URL", "nats://127.0.0.1:4222")
REPO_ROOT = Path(__file__).resolve().parents[3]
PER_PRODUCER = 2000


@dataclass
class Transport:
    settings: MeshSettings
    env: dict[str, str]


@pytest.fixture
async def transport(tmp_path: Path, pg_url: str) -> AsyncIterator[Transport]:
    try:
        probe = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False)
        await probe.jetstream().account_info()
        await probe.close()
    except Exception as exc:
        pytest.fail(
            f"NATS JetStream is unreachable at {NATS_URL} ({type(exc).__name__}: {exc}); start "
            "nats-server -js on 127.0.0.1:4222 or set MAKOTO_TEST_NATS_URL.",
            pytrace=False,
        )
    tag = uuid.uuid4().hex[:10]
    settings = make_settings(
        tmp_path,
        nats_url=NATS_URL,
        usage_transport="jetstream",
        usage_stream=f"TEST_USAGE_{tag}",
        usage_subject=f"makoto-test-{tag}.usage",
        usage_ack_wait_seconds=2.0,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKOTO_")}
    env.update(
        {
            "MAKOTO_HOME": str(settings.home),
            "MAKOTO_TLS_DIR": str(settings.tls_path),
            "MAKOTO_NATS_URL": NATS_URL,
            "MAKOTO_USAGE_TRANSPORT": "jetstream",
            "MAKOTO_USAGE_STREAM": settings.usage_stream,
            "MAKOTO_USAGE_SUBJECT": settings.usage_subject,
            "MAKOTO_USAGE_ACK_WAIT_SECONDS": "2",
            "MAKOTO_METERING_DB_URL": pg_url,
            "MAKOTO_LOG_LEVEL": "WARNING",
            "MAKOTO_REDIS_PREFIX": settings.redis_prefix,
            "PYTHONUNBUFFERED": "1",
        }
    )
    try:
        yield Transport(settings, env)
    finally:
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(settings.usage_stream)
        except Exception:  # never created (the test failed early): nothing to delete
            pass
        await nc.close()


class Processes:
    """Child processes of one test, each stopped (kill -9 if need be) at the end."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self.all: list[subprocess.Popen[str]] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        with open(self._logs / f"{name}-{len(self.all)}.log", "w") as out:  # the child keeps its own fd
            proc = subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if name.startswith("producer") else out,
                stderr=out,
                text=True,
            )
        self.all.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.all:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.all:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def _metering(procs: Processes, transport: Transport, replica: int) -> subprocess.Popen[str]:
    env = dict(transport.env, MAKOTO_METERING_PORT=str(free_port()), MAKOTO_REPLICA_INDEX=str(replica))
    return procs.spawn(f"metering{replica}", ["services.metering"], env)


def _producer(procs: Processes, transport: Transport, source: str, tenant: str) -> subprocess.Popen[str]:
    return procs.spawn(
        f"producer-{source}", ["tests.usage_producer", source, tenant, str(PER_PRODUCER)], transport.env
    )


async def _read_until(proc: subprocess.Popen[str], wanted: int) -> None:
    """Wait until the producer printed `recorded N` with N >= wanted."""

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("recorded ") and int(line.split()[1]) >= wanted:
                return
        raise AssertionError(f"producer ended (rc={proc.poll()}) before recording {wanted}")

    await asyncio.wait_for(asyncio.to_thread(read), 60)  # generous: process start on a busy machine


async def _finishes(proc: subprocess.Popen[str], timeout: float) -> None:
    """Wait for a producer to print `done` and exit 0; else fail with what it printed."""
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)
        proc.wait()

    try:
        await asyncio.wait_for(asyncio.to_thread(read), timeout)
    except TimeoutError:
        proc.kill()  # the reader thread then sees EOF and ends
        pytest.fail(f"producer did not finish within {timeout:.0f} s; it printed: {''.join(lines[-40:])}")
    assert proc.returncode == 0 and lines and lines[-1].strip() == "done", "".join(lines[-40:])


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _stored(pg_url: str, tenant: str) -> tuple[int, int]:
    conn = await asyncpg.connect(_pg_dsn(pg_url))
    try:
        row = await conn.fetchrow(
            "SELECT count(*), coalesce(sum(value), 0) FROM usage_events WHERE subject = $1", tenant
        )
        assert row is not None
        return int(row[0]), int(row[1])
    except asyncpg.UndefinedTableError:
        return 0, 0
    finally:
        await conn.close()


async def test_kill_a_producer_and_a_metering_replica_under_load_counts_exact(
    transport: Transport, processes: Processes, pg_url: str
) -> None:
    tenant = f"t-js-{uuid.uuid4().hex[:10]}"
    await (await SqlMeteringStore.open(pg_url)).close()  # migrated once, not by two replicas racing
    m0 = _metering(processes, transport, 0)
    _metering(processes, transport, 1)
    p0 = _producer(processes, transport, "prod-a", tenant)
    p1 = _producer(processes, transport, "prod-b", tenant)

    # Under load: kill -9 producer A a third of the way in, and MeteringService replica 0 once
    # it has stored something (so it dies holding unacked deliveries, most likely).
    await _read_until(p0, PER_PRODUCER // 3)
    p0.send_signal(signal.SIGKILL)
    p0.wait(5)
    deadline = time.monotonic() + 60
    while (await _stored(pg_url, tenant))[0] == 0:
        assert time.monotonic() < deadline, "nothing stored within 60 s"
        await asyncio.sleep(0.05)
    m0.send_signal(signal.SIGKILL)
    m0.wait(5)

    # Producer A comes back on the same spool and, as a retrying client would, records all of
    # its ids again: what it had spooled and published before the kill must not double.
    again = _producer(processes, transport, "prod-a", tenant)
    for proc in (p1, again):
        await _finishes(proc, 90)

    expected = (2 * PER_PRODUCER, 2 * PER_PRODUCER)
    # Bounded: well past the ack wait (2 s) after which the killed replica's batch comes back.
    deadline = time.monotonic() + 30
    while (got := await _stored(pg_url, tenant)) != expected:
        assert got[0] <= expected[0], f"more events than produced: {got}"
        assert time.monotonic() < deadline, f"stored {got}, expected {expected}"
        await asyncio.sleep(0.1)
    # Nothing left behind in the stream either (work queue: acked messages are removed).
    nc = await nats.connect(NATS_URL)
    try:
        info = await nc.jetstream().consumer_info(transport.settings.usage_stream, "metering")
        deadline = time.monotonic() + 10
        while info.num_pending or info.num_ack_pending:
            assert time.monotonic() < deadline, f"pending {info.num_pending}, unacked {info.num_ack_pending}"
            await asyncio.sleep(0.2)
            info = await nc.jetstream().consumer_info(transport.settings.usage_stream, "metering")
    finally:
        await nc.close()


async def test_consumer_terminates_invalid_messages_and_stores_the_rest(
    transport: Transport, pg_url: str
) -> None:
    """A message that is not a valid event is terminated, never retried forever, and does not
    hold back the valid events published with it."""
    settings = transport.settings
    store = await SqlMeteringStore.open(pg_url)
    consumer = JetStreamUsageConsumer(settings, Metering(store, store, FixedPlanResolver()))
    tenant = f"t-js-{uuid.uuid4().hex[:10]}"
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        await ensure_stream(js, settings)
        good = metering_pb2.UsageEvent(
            id=f"{tenant}-ok", source="test", type="api_calls", subject=tenant, value=5
        )
        good.time.GetCurrentTime()
        bad = metering_pb2.UsageEvent(
            id=f"{tenant}-bad", source="test", type="API CALLS", subject=tenant, value=7
        )
        bad.time.GetCurrentTime()
        subject = settings.usage_subject_name
        for payload, msg_id in (
            (b"\xff\x00garbage", "g"),
            (bad.SerializeToString(), bad.id),
            (good.SerializeToString(), good.id),
        ):
            await js.publish(subject, payload, headers={MSG_ID_HEADER: msg_id})
        await consumer.start()
        deadline = time.monotonic() + 10
        while (got := await _stored(pg_url, tenant)) != (1, 5):
            assert time.monotonic() < deadline, f"stored {got}"
            await asyncio.sleep(0.05)
        # The two invalid ones are gone from the stream, not waiting for redelivery.
        deadline = time.monotonic() + 10
        while (
            info := await js.consumer_info(settings.usage_stream, "metering")
        ).num_ack_pending or info.num_pending:
            assert time.monotonic() < deadline, f"pending {info.num_pending}, unacked {info.num_ack_pending}"
            await asyncio.sleep(0.1)
        assert (await js.stream_info(settings.usage_stream)).state.messages == 0
    finally:
        await consumer.close()
        await nc.close()
        await store.close()
