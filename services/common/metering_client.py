"""Usage events and the durable client that delivers them to MeteringService.

Every service reports usage through a `UsageRecorder` (services.common.usage). The one used by
services other than MeteringService is `SpoolingUsageRecorder`:

* `record()` validates the event (the proto's own rules), then appends it to a local SQLite spool
  (WAL) and returns once it is committed there. Commits are grouped: the `record()` calls of one
  turn of the event loop share one transaction, written in the loop (no fsync there: the WAL's
  checkpoints, which fsync, run on a thread of their own).
* A background task sends the spool in batches to `MeteringService.RecordUsage` with a service
  token and deletes a batch only after the server acknowledged every event in it. Failures back
  off exponentially with jitter (bounded) and are retried forever; nothing is dropped.
* Event ids are stable (a per-process prefix and a counter unless given: _EventIds), so a
  batch sent twice -- e.g. the process died between the server's commit and the local delete --
  is stored once: RecordUsage is idempotent.
* The spool outlives the process: a new recorder on the same spool sends what is left.

Durability: the spool runs `synchronous=NORMAL` in WAL mode, so a committed event survives a
crash or kill of the process; a power loss may lose the last few commits (the usual WAL trade-off,
chosen because `record()` sits on every RPC's path).

`LocalUsageRecorder` is MeteringService's own recorder: it writes to its store directly and
never calls itself over gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import sqlite3
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, Unpack

import grpc
import structlog
from google.protobuf.message import DecodeError
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from prometheus_client import Gauge

from services.common import metrics, tls
from services.common.config import MeshSettings
from services.common.dev_issuer import ServiceTokenSource
from services.common.errors import InvalidArgument, MakotoError, Unavailable
from services.common.interceptor import validate_message
from services.common.timestamps import set_timestamp
from services.common.trace_context import client_interceptors
from services.common.usage import UsageFields

log = structlog.get_logger("makoto.metering_client")

# RecordUsage refuses more than this many events in one request (proto rule).
MAX_BATCH = 1000
# Event times MeteringService accepts.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
# Event shapes (source, meter, tenant, dimensions) already validated: whether an event with a
# generated id is valid depends on nothing else (time is range-checked here, value has no rule),
# so protovalidate runs once per shape instead of once per call. Bounded: cleared when full.
_VALID_SHAPES: set[tuple[object, ...]] = set()
_VALID_SHAPES_MAX = 8192

# What operators watch (alert on depth and age growing, on writable == 0).
SPOOL_EVENTS = Gauge("makoto_usage_spool_events", "Usage events waiting in the local spool", ["source"])
SPOOL_OLDEST_AGE = Gauge(
    "makoto_usage_spool_oldest_age_seconds", "Age of the oldest undelivered usage event", ["source"]
)
SPOOL_WRITABLE = Gauge("makoto_usage_spool_writable", "1 while the usage spool accepts writes", ["source"])
# A spool that could not write is probed this often until it can again.
RETRY_AFTER_SECONDS = 5.0


class UsageNotDurable(Unavailable):
    """The call's usage could not be made durable: the call must not answer OK."""

    reason = "USAGE_SPOOL_UNAVAILABLE"
    default_retry_after = RETRY_AFTER_SECONDS


# ---------------------------------------------------------------------------------------------
# The event


@dataclass(frozen=True)
class MeterEvent:
    """A usage event, shaped like a CloudEvent: `type` is the meter, `subject` the tenant."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime  # timezone-aware, UTC
    value: int
    dimensions: Mapping[str, str] = field(default_factory=dict)

    def to_proto(self) -> metering_pb2.UsageEvent:
        msg = metering_pb2.UsageEvent(
            id=self.id,
            source=self.source,
            type=self.type,
            subject=self.subject,
            value=self.value,
            dimensions=dict(self.dimensions),
        )
        set_timestamp(msg.time, self.time)
        return msg

    @classmethod
    def from_proto(cls, msg: metering_pb2.UsageEvent) -> MeterEvent:
        return cls(
            id=msg.id,
            source=msg.source,
            type=msg.type,
            subject=msg.subject,
            time=msg.time.ToDatetime(tzinfo=UTC),
            value=msg.value,
            dimensions=dict(msg.dimensions),
        )


class _EventIds:
    """Unique event ids for a process, cheaper than uuid4 (no random draw per id): 128 random
    bits drawn at start (again in a forked child: workers are forked) and a counter."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(16).hex() + "-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


_event_ids = _EventIds()


def new_event(*, source: str, **fields: Unpack[UsageFields]) -> MeterEvent:
    """Build and validate an event (raises InvalidArgument). A naive `time` is taken as UTC."""
    meter, tenant_id, event_id = fields["meter"], fields["tenant_id"], fields.get("event_id")
    when = fields.get("time") or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if not EARLIEST <= when <= LATEST:
        raise InvalidArgument(
            "usage event time out of range", field_violations=[("time", "must be 1970-01-01..9999-01-01")]
        )
    event = MeterEvent(
        id=event_id or _event_ids.next(),
        source=source,
        type=meter,
        subject=tenant_id,
        time=when.astimezone(UTC),
        value=fields["value"],
        dimensions=dict(fields.get("dimensions") or {}),
    )
    # Refuse here what the server would refuse: an invalid event must not sit in the spool
    # blocking the events behind it.
    shape = (source, meter, tenant_id, *sorted(event.dimensions.items())) if event_id is None else None
    if shape is None or shape not in _VALID_SHAPES:
        validate_message(event.to_proto())
        if shape is not None:
            if len(_VALID_SHAPES) >= _VALID_SHAPES_MAX:
                _VALID_SHAPES.clear()
            _VALID_SHAPES.add(shape)
    return event


class _EventRecorder:
    """record() of every UsageRecorder: the event is built and validated once here; a recorder
    only says how it keeps one (_keep)."""

    _source: str

    async def record(self, **fields: Unpack[UsageFields]) -> None:
        await self._keep(new_event(source=self._source, **fields))

    async def _keep(self, event: MeterEvent) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# The spool


class _Spool:
    """The SQLite spool, written on the event loop's thread.

    Every statement here is short (a group commit in WAL mode with synchronous=NORMAL writes the
    WAL without an fsync: ~15-40 µs per group), so it runs in the loop itself. A hop to a spool
    thread cost ~150 µs of CPU per commit in thread hand-offs and GIL switches, several times
    the SQLite write (issue 10). What can take long -- the checkpoint that copies the WAL into
    the database and fsyncs it -- runs on a thread of its own with a connection of its own
    (`checkpoint`), never in the loop. Appends are group-committed: every append made in one
    turn of the loop shares one transaction."""

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS events ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " id TEXT NOT NULL UNIQUE,"
        " payload BLOB NOT NULL)",
        # Events the server refused as invalid: kept (never lost), but out of the send path.
        "CREATE TABLE IF NOT EXISTS dead_letters ("
        " id TEXT PRIMARY KEY,"
        " payload BLOB NOT NULL,"
        " reason TEXT NOT NULL,"
        " at TEXT NOT NULL)",
    )

    # Seconds a statement waits for another connection's lock (only a checkpoint or a reader
    # elsewhere can hold one): short, since the loop waits with it.
    _BUSY_TIMEOUT = 1.0

    def __init__(self, path: Path, max_bytes: int | None = None) -> None:
        self.path = path
        # A byte cap on the spool file (SQLite max_page_count): past it inserts fail as on a
        # full disk, and the recorder's write-failure policy applies.
        self._max_bytes = max_bytes
        # Events in the spool (exact: every change is made through this object).
        self.depth = 0
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._flush_scheduled = False
        # The checkpointer's thread and connection (see checkpoint()).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"spool-ckpt-{path.stem}")
        self._ckpt_conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self._BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                # Commits never checkpoint (and so never fsync) in the loop: checkpoint() does.
                conn.execute("PRAGMA wal_autocheckpoint=0")
                for ddl in self._SCHEMA:
                    conn.execute(ddl)
                if self._max_bytes is not None:
                    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
                    conn.execute(f"PRAGMA max_page_count = {max(1, self._max_bytes // page)}")
            except BaseException:
                conn.close()  # e.g. a full disk while setting up: no connection left behind
                raise
            self._conn = conn
        return self._conn

    def _insert(self, rows: list[tuple[str, bytes]]) -> None:
        db = self._db()
        with db:  # one transaction for the whole group
            db.execute("BEGIN IMMEDIATE")
            cur = db.executemany("INSERT OR IGNORE INTO events (id, payload) VALUES (?, ?)", rows)
        self.depth += max(0, cur.rowcount)

    def _read(self, limit: int) -> list[tuple[int, str, bytes]]:
        cur = self._db().execute("SELECT seq, id, payload FROM events ORDER BY seq LIMIT ?", (limit,))
        return [(int(s), str(i), bytes(p)) for s, i, p in cur.fetchall()]

    def _delete(self, seqs: list[int], contiguous: bool = False) -> None:
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            if contiguous and seqs:
                # A batch read as the spool's first rows by seq: every row from its lowest to its
                # highest seq is in it (new rows get higher seqs), so one range delete is exact.
                cur = db.execute("DELETE FROM events WHERE seq BETWEEN ? AND ?", (min(seqs), max(seqs)))
            else:
                cur = db.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])
        self.depth = max(0, self.depth - max(0, cur.rowcount))

    def _bury(self, seq: int, event_id: str, payload: bytes, reason: str) -> None:
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT OR REPLACE INTO dead_letters (id, payload, reason, at) VALUES (?, ?, ?, ?)",
                (event_id, payload, reason[:500], datetime.now(UTC).isoformat()),
            )
            gone = db.execute("DELETE FROM events WHERE seq = ?", (seq,)).rowcount
        self.depth = max(0, self.depth - gone)

    def _count(self) -> int:
        self.depth = int(self._db().execute("SELECT count(*) FROM events").fetchone()[0])
        return self.depth

    def _bounds(self) -> tuple[int | None, int | None]:
        first, last = self._db().execute("SELECT min(seq), max(seq) FROM events").fetchone()
        return first, last

    def _oldest(self) -> bytes | None:
        row = self._db().execute("SELECT payload FROM events ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else bytes(row[0])

    def _probe(self) -> None:
        """A real write with room to spare (8 KiB, committed, then removed): raises while the
        spool cannot take events."""
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("CREATE TABLE IF NOT EXISTS probe (k INTEGER PRIMARY KEY, pad BLOB NOT NULL)")
            db.execute("INSERT OR REPLACE INTO probe (k, pad) VALUES (1, zeroblob(8192))")
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM probe")

    def _checkpoint(self, mode: str) -> None:
        """Runs on the checkpointer's thread, on its own connection (WAL lets it copy committed
        pages while the loop goes on writing)."""
        if self._ckpt_conn is None:
            if not self.path.exists():
                return
            self._ckpt_conn = sqlite3.connect(
                self.path, timeout=self._BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
        self._ckpt_conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()

    def _close_checkpointer(self) -> None:
        if self._ckpt_conn is not None:
            self._ckpt_conn.close()
            self._ckpt_conn = None

    # -- async facade (the statements run in the loop, see the class docstring) -------------

    async def append(self, event_id: str, payload: bytes) -> None:
        """Returns once the event is committed to the spool."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((event_id, payload, future))
        if not self._flush_scheduled:
            # The group: every append made in this turn of the loop and the next (a call's
            # events are often started one step apart: a task's first step, then its caller).
            self._flush_scheduled = True
            loop.call_soon(loop.call_soon, self._write_pending)
        await future

    def _write_pending(self) -> None:
        self._flush_scheduled = False
        group, self._pending = self._pending, []
        if not group:
            return
        try:
            self._insert([(i, p) for i, p, _ in group])
        except Exception as exc:
            for *_, fut in group:
                if not fut.done():
                    fut.set_exception(exc)
        else:
            for *_, fut in group:
                if not fut.done():
                    fut.set_result(None)

    async def read(self, limit: int) -> list[tuple[int, str, bytes]]:
        return self._read(limit)

    async def delete(self, seqs: list[int], *, contiguous: bool = False) -> None:
        self._delete(seqs, contiguous)

    async def bury(self, seq: int, event_id: str, payload: bytes, reason: str) -> None:
        self._bury(seq, event_id, payload, reason)

    async def count(self) -> int:
        return self._count()

    async def bounds(self) -> tuple[int | None, int | None]:
        """(first, last) sequence number in the spool; (None, None) when empty. Sequence
        numbers only grow (AUTOINCREMENT), so "first > an earlier last" means delivered."""
        return self._bounds()

    async def oldest(self) -> bytes | None:
        return self._oldest()

    async def probe(self) -> None:
        self._probe()

    async def checkpoint(self, mode: str = "PASSIVE") -> None:
        """Copy the WAL into the database file (and let the next commit restart the WAL), off
        the loop. PASSIVE never waits for the loop's writes; close() runs TRUNCATE."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._checkpoint, mode)

    async def close(self) -> None:
        if self._pending:
            self._write_pending()  # a flush still scheduled then finds nothing left
        with contextlib.suppress(Exception):  # e.g. a read-only or full spool: the WAL keeps it
            await self.checkpoint("TRUNCATE")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_checkpointer)
        self._executor.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def spool_path(settings: MeshSettings, source: str) -> Path:
    # One spool per replica and worker: two processes sending one spool would send every event
    # twice. Worker 0 keeps the replica's name, so a service going from 1 to N workers still
    # sends what its single process left behind.
    suffix = f"-{settings.replica_index}" if settings.replica_index else ""
    suffix += f"-w{settings.worker_index}" if settings.worker_index else ""
    return settings.data_dir / "spool" / f"{source}{suffix}.sqlite3"


def _append_after_close(path: Path, event_id: str, payload: bytes) -> None:
    """One insert on a short-lived connection (the spool's own is closed after close)."""
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        for ddl in _Spool._SCHEMA:
            conn.execute(ddl)
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR IGNORE INTO events (id, payload) VALUES (?, ?)", (event_id, payload))
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# The recorders


class _Rejected(Exception):
    """The server refused a batch as invalid; the caller isolates the bad event(s)."""


class SpoolingUsageRecorder(_EventRecorder):
    """UsageRecorder for every service but MeteringService: durable spool + batched delivery."""

    # Delivery tuning (class attributes so the constructor stays the agreed one).
    backoff_base_seconds: float = 0.2
    backoff_max_seconds: float = 10.0
    rpc_timeout_seconds: float = 10.0
    close_timeout_seconds: float = 2.0
    watch_interval_seconds: float = 1.0

    def __init__(
        self,
        settings: MeshSettings,
        source: str,
        *,
        flush_interval: float = 0.5,
        batch_size: int = 200,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._check_transport(settings)
        self._settings = settings
        self._source = source
        self._flush_interval = flush_interval
        self._batch_size = min(batch_size, MAX_BATCH)
        self._spool = _Spool(spool_path(settings, source), settings.usage_spool_max_bytes or None)
        self._max_events = settings.usage_spool_max_events
        self._warn_events = settings.usage_spool_warn_events
        self._warned = False
        # Why the spool last failed to write (None: it writes). Set by a failed record, cleared
        # by the next successful write or probe.
        self._write_error: str | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._tokens = ServiceTokenSource(settings, source, "metering")
        self._channel: grpc.aio.Channel | None = None
        self._stub: metering_pb2_grpc.MeteringServiceStub | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._unsent_hint = 0
        self._flush_all = False  # the next wake sends everything, not only full batches
        self._closed = False

    @property
    def path(self) -> Path:
        return self._spool.path

    async def start(self) -> None:
        """Start delivering; whatever an earlier process left in the spool goes first."""
        if self._closed:
            raise RuntimeError("recorder is closed")
        if self._task is not None:
            return
        await self._open_transport()
        self._task = asyncio.create_task(self._deliver_forever(), name=f"usage-sender-{self._source}")
        self._watcher = asyncio.create_task(self._watch_forever(), name=f"usage-spool-watch-{self._source}")
        await self._refresh()

    # -- transport (overridden by the JetStream recorder) ---------------------------------

    @staticmethod
    def _check_transport(settings: MeshSettings) -> None:
        """Refuse settings the transport cannot work with (before anything is created)."""

    async def _open_transport(self) -> None:
        self._channel = tls.open_channel(
            self._settings,
            "metering",
            identity=self._source,
            options=[
                ("grpc.max_send_message_length", self._settings.max_message_bytes),
                # gRPC's own reconnect backoff grows to 120 s by default: after a long outage
                # the channel would refuse calls long after MeteringService is back.
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 5000),
            ],
            # Delivery is batched in the background (outside any call's trace): no spans there;
            # a record sent from within a call would carry its trace.
            interceptors=client_interceptors(),
        )
        self._stub = metering_pb2_grpc.MeteringServiceStub(self._channel)

    async def _close_transport(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def _keep(self, event: MeterEvent) -> None:
        payload = event.to_proto().SerializeToString()
        if self._closed:
            # A call that ended after close (cut at the grace deadline, a late finaliser):
            # still written to the spool file; the next start sends it.
            await asyncio.to_thread(_append_after_close, self._spool.path, event.id, payload)
            return
        try:
            await self._spool.append(event.id, payload)
        except Exception as exc:
            self._spool_failed(exc)
            raise UsageNotDurable("usage could not be recorded durably; try again later") from exc
        # A small event that still fits does not end the refusal: only the watcher's probe (a
        # write with room to spare) does, so readiness does not flap at the edge of a full disk.
        metrics.usage(event.subject, event.type, event.value)
        self._check_depth()
        self._unsent_hint += 1
        if self._unsent_hint >= self._batch_size:
            self._wake.set()

    # -- durability gate -------------------------------------------------------------------

    def refusal(self) -> MakotoError | None:
        """Why a new metered call must be refused now (None: it may run)."""
        if self._closed:
            return None  # shutting down: the late-write path still keeps every event
        if self._write_error is not None:
            return UsageNotDurable("usage cannot be recorded durably right now; try again later")
        if self._spool.depth >= self._max_events:
            return Unavailable(
                "usage backlog is full; try again later",
                reason="USAGE_SPOOL_FULL",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        return None

    def _spool_failed(self, exc: BaseException) -> None:
        first = self._write_error is None
        self._write_error = f"{type(exc).__name__}: {exc}"
        SPOOL_WRITABLE.labels(self._source).set(0)
        if first:
            # Alert-worthy: calls are being refused until the spool writes again.
            log.error(
                "usage spool cannot write; refusing metered calls",
                source=self._source,
                path=str(self._spool.path),
                error=self._write_error,
            )

    def _check_depth(self) -> None:
        SPOOL_EVENTS.labels(self._source).set(self._spool.depth)
        if self._spool.depth >= self._warn_events and not self._warned:
            self._warned = True
            log.error(
                "usage spool growing",
                source=self._source,
                depth=self._spool.depth,
                warn_at=self._warn_events,
                refuse_at=self._max_events,
            )
        elif self._spool.depth < self._warn_events // 2:
            self._warned = False

    async def _refresh(self) -> None:
        """Exact depth and oldest age from the spool; probe it while it cannot write."""
        if self._write_error is not None:
            try:
                await self._spool.probe()
            except Exception as exc:
                self._write_error = f"{type(exc).__name__}: {exc}"
            else:
                log.warning("usage spool writes again", source=self._source)
                self._write_error = None
        SPOOL_WRITABLE.labels(self._source).set(0 if self._write_error else 1)
        try:
            await self._spool.count()
            oldest = await self._spool.oldest()
        except Exception as exc:  # unreadable too: certainly not writable
            self._spool_failed(exc)
            return
        self._check_depth()
        age = 0.0
        if oldest is not None:
            with contextlib.suppress(DecodeError):
                when = metering_pb2.UsageEvent.FromString(oldest).time.ToDatetime(tzinfo=UTC)
                age = max(0.0, (datetime.now(UTC) - when).total_seconds())
        SPOOL_OLDEST_AGE.labels(self._source).set(age)

    async def _watch_forever(self) -> None:
        # Separate from delivery: during an outage delivery sits in its back-off, and that is
        # exactly when depth and age matter.
        while True:
            await asyncio.sleep(self.watch_interval_seconds)
            try:
                await self._refresh()
            except Exception:
                log.exception("usage spool watch failed", source=self._source)
            try:
                # The spool's commits do not checkpoint (they run in the loop): this does, off it.
                await self._spool.checkpoint()
            except Exception as exc:  # unwritable: _refresh already says so, once
                log.debug("usage spool checkpoint failed", source=self._source, error=str(exc))

    async def pending(self) -> int:
        """Events in the spool not yet acknowledged by the server."""
        return await self._spool.count()

    async def delivered(self) -> None:
        """Return once every event spooled before this call was acknowledged by the server
        (later ones may still be pending: works under steady load). Bound it with a timeout."""
        _, last = await self._spool.bounds()
        if last is None:
            return
        self._flush_all = True
        self._wake.set()
        while True:
            first, _ = await self._spool.bounds()
            if first is None or first > last:
                return
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Stop the sender, try one last flush (bounded), and keep whatever is left spooled."""
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            try:
                await asyncio.wait_for(self._drain(retry=False), self.close_timeout_seconds)
            except Exception as exc:  # TimeoutError included: the spool keeps the rest
                log.info("usage flush on close incomplete", source=self._source, error=type(exc).__name__)
        await self._close_transport()
        left = await self._spool.count()
        await self._spool.close()
        if left:
            log.info("usage events left in spool", source=self._source, count=left)

    # -- delivery ----------------------------------------------------------------------------

    async def _deliver_forever(self) -> None:
        # Woken by a full batch, only full batches go: the rest rides with the next one or
        # goes when the flush interval ends. Draining to empty on every wake sent a stream of
        # small batches under load (each a RecordUsage call, a transaction and an audit-chain
        # head read on MeteringService) for no gain in latency: the interval bounds it anyway.
        full_only = False
        while True:
            self._wake.clear()
            self._unsent_hint = 0
            if self._flush_all:
                full_only, self._flush_all = False, False
            try:
                await self._drain(retry=True, full_only=full_only)
            except Exception:
                # e.g. the spool file is unreadable for a moment: the sender must not die.
                log.exception("usage sender error; will retry", source=self._source)
                await asyncio.sleep(self.backoff_max_seconds)
            try:
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
                full_only = True
            except TimeoutError:
                full_only = False

    async def _drain(self, *, retry: bool, full_only: bool = False) -> None:
        """Send the spool until it is empty (full_only: until less than a batch is left). With
        retry, failures back off and try again forever; without, the first failure raises."""
        attempt = 0
        while True:
            rows = await self._spool.read(self._batch_size)
            if not rows or (full_only and len(rows) < self._batch_size):
                return
            try:
                await self._send(rows)
                attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not retry:
                    raise
                attempt += 1
                delay = self._backoff(attempt)
                code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
                log.warning(
                    "usage delivery failed; retrying",
                    source=self._source,
                    events=len(rows),
                    error=code,
                    attempt=attempt,
                    retry_in_s=round(delay, 3),
                )
                await asyncio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Exponential with 'equal jitter': between half and all of the capped step."""
        growth = float(2 ** min(attempt - 1, 30))
        step: float = min(self.backoff_max_seconds, self.backoff_base_seconds * growth)
        return step / 2 + random.uniform(0, step / 2)  # noqa: S311 -- jitter, not cryptography

    async def _send(self, rows: Sequence[tuple[int, str, bytes]]) -> None:
        good: list[tuple[int, str, bytes, metering_pb2.UsageEvent]] = []
        for seq, event_id, payload in rows:
            try:
                good.append((seq, event_id, payload, metering_pb2.UsageEvent.FromString(payload)))
            except DecodeError:
                await self._spool.bury(seq, event_id, payload, "undecodable spool entry")
        if not good:
            return
        try:
            await self._call_server([g[3] for g in good])
        except _Rejected:
            await self._isolate(good)
            return
        # rows came from read(): the spool's first rows by seq (undecodable ones already buried).
        await self._spool.delete([g[0] for g in good], contiguous=True)

    async def _isolate(self, rows: Sequence[tuple[int, str, bytes, metering_pb2.UsageEvent]]) -> None:
        """The server refused a batch as invalid: send one by one; set aside only the refused."""
        for seq, event_id, payload, event in rows:
            try:
                await self._call_server([event])
            except _Rejected as exc:
                log.error("usage event refused by server; moved to dead_letters", event_id=event_id)
                await self._spool.bury(seq, event_id, payload, str(exc))
                continue
            await self._spool.delete([seq])

    async def _call_server(self, events: list[metering_pb2.UsageEvent]) -> None:
        assert self._stub is not None
        try:
            reply = await self._stub.RecordUsage(
                metering_pb2.RecordUsageRequest(events=events),
                metadata=self._tokens.metadata(),
                timeout=self.rpc_timeout_seconds,
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise _Rejected(err.details() or "invalid") from err
            raise
        if reply.accepted + reply.duplicates != len(events):
            # Not everything was acknowledged: keep the batch and send it again (idempotent).
            raise RuntimeError(
                f"server acknowledged {reply.accepted + reply.duplicates} of {len(events)} events"
            )


class UsageEventSink(Protocol):
    """Where LocalUsageRecorder writes: MeteringService's usage store."""

    async def insert_events(self, events: Sequence[MeterEvent]) -> int: ...


class LocalUsageRecorder(_EventRecorder):
    """MeteringService's own recorder: writes straight to its store (never to itself over gRPC)."""

    def __init__(self, store: UsageEventSink, source: str = "metering") -> None:
        self._store = store
        self._source = source

    async def start(self) -> None:
        return None

    async def _keep(self, event: MeterEvent) -> None:
        await self._store.insert_events([event])
        metrics.usage(event.subject, event.type, event.value)

    async def close(self) -> None:
        return None


__all__ = [
    "LocalUsageRecorder",
    "MeterEvent",
    "SpoolingUsageRecorder",
    "UsageEventSink",
    "UsageNotDurable",
    "new_event",
    "spool_path",
]
