"""The usage spool commits in the event loop, grouping the appends of a loop turn (issue 10)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from services.common.metering_client import _Spool


async def test_appends_of_one_turn_share_one_commit_and_are_durable(tmp_path: Path) -> None:
    spool = _Spool(tmp_path / "s.sqlite3")
    groups: list[int] = []
    insert = spool._insert

    def counted(rows: list[tuple[str, bytes]]) -> None:
        groups.append(len(rows))
        insert(rows)

    spool._insert = counted  # type: ignore[method-assign]
    await asyncio.gather(*(spool.append(f"e{i}", b"x") for i in range(10)))
    await spool.append("last", b"y")
    assert groups == [10, 1]
    assert spool.depth == 11
    await spool.checkpoint()
    # Another connection sees every committed event (as a new process would after a crash).
    with sqlite3.connect(spool.path) as other:
        assert other.execute("SELECT count(*) FROM events").fetchone()[0] == 11
    await spool.close()
