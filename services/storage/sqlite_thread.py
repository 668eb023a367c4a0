"""One SQLite connection owned by one worker thread.

Whole transactions are submitted as one function and run there, so they never interleave
with other operations on the same connection, and the event loop never waits on disk.
Several connections (other processes, or a retired adapter still draining) may share a file:
WAL mode plus a busy timeout serialize writers across them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from services.common.errors import Unavailable

T = TypeVar("T")


class SqliteThread:
    def __init__(self, path: Path, *, name: str, busy_timeout_ms: int = 10_000) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None

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
        started, fn still completes (a transaction is never cut in half)."""

        def call() -> T:
            if self._conn is None:
                raise RuntimeError("sqlite connection is closed")
            try:
                return fn(self._conn)
            except sqlite3.OperationalError as exc:
                # Another writer held the lock past the busy timeout: worth a retry.
                if "locked" in str(exc) or "busy" in str(exc):
                    raise Unavailable(
                        "database busy", retry_after_seconds=1.0, reason="BACKEND_BUSY"
                    ) from exc
                raise

        return await self._submit(call)

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
