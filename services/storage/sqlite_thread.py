"""One SQLite connection owned by one worker thread.

Whole transactions are submitted as one function and run there, so they never interleave
with other operations on the same connection, and the event loop never waits on disk.
Several connections (other processes, or a retired adapter still draining) may share a file:
WAL mode plus a busy timeout serialize writers across them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from services.common.errors import Unavailable

T = TypeVar("T")


class SqliteThread:
    def __init__(self, path: Path, *, name: str, busy_timeout_ms: int = 10_000) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None
        # Calls waiting for the thread, and whether a drain is queued or running there.
        self._lock = threading.Lock()
        self._queue: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._draining = False

    def _open(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=True)
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        self._conn = conn

    async def open(self) -> None:
        await self._submit(lambda: self._open())

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(conn) in the connection's thread. If the caller is cancelled once fn has
        started, fn still completes (a transaction is never cut in half).

        Calls made while the thread is busy are run together by its next hand-off, one after
        the other, and answered with one wake-up of the event loop: a hand-off per call (submit,
        wake the thread, wake the loop) cost more CPU than a point read itself."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._queue.append((fn, future))
            start = not self._draining
            self._draining = True
        if start:
            self._executor.submit(self._drain, loop)
        return await future

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the connection's thread: run queued calls until none is left."""
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._draining = False
                    return
            done: list[tuple[asyncio.Future[Any], bool, Any]] = []
            for fn, future in batch:
                if future.cancelled():  # its caller gave up before it started: not run
                    continue
                try:
                    done.append((future, True, self._call(fn)))
                except BaseException as exc:
                    done.append((future, False, exc))
            try:
                loop.call_soon_threadsafe(_settle, done)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise RuntimeError("sqlite connection is closed")
        try:
            return fn(self._conn)
        except sqlite3.OperationalError as exc:
            # Another writer held the lock past the busy timeout: worth a retry.
            if "locked" in str(exc) or "busy" in str(exc):
                raise Unavailable("database busy", retry_after_seconds=1.0, reason="BACKEND_BUSY") from exc
            raise

    async def _submit(self, fn: Callable[[], T]) -> T:
        return await asyncio.wrap_future(self._executor.submit(fn))

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        try:
            await self._submit(shut)
        finally:
            self._executor.shutdown(wait=False)


def _settle(done: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in done:
        if future.done():  # cancelled while it ran: its result goes nowhere
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def transaction(conn: sqlite3.Connection, body: Callable[[], T]) -> T:
    """BEGIN IMMEDIATE (take the write lock up front so conditions checked inside stay true),
    run body, COMMIT; ROLLBACK on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result
