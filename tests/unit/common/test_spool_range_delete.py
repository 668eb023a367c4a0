"""The spool deletes a delivered batch with one range delete: exactly the rows read, never a row
appended while the batch was in flight."""

from __future__ import annotations

from pathlib import Path

from services.common.metering_client import _Spool


async def test_range_delete_removes_the_batch_and_keeps_later_rows(tmp_path: Path) -> None:
    spool = _Spool(tmp_path / "s.sqlite3")
    try:
        for i in range(10):
            await spool.append(f"e{i}", b"x")
        batch = await spool.read(6)
        for i in range(10, 13):  # arrive while the batch is being delivered
            await spool.append(f"e{i}", b"y")
        await spool.delete([seq for seq, _, _ in batch], contiguous=True)
        left = [event_id for _, event_id, _ in await spool.read(100)]
        assert left == [f"e{i}" for i in range(6, 13)]
        assert await spool.count() == 7 and spool.depth == 7
    finally:
        await spool.close()
