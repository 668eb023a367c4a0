"""The LLM token events and the call's api_calls event commit in one spool write (a real
SQLite spool), and the call's api_calls event is never durable before its token events."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from services.common.metering_client import SpoolingUsageRecorder
from services.common.usage import API_CALLS
from services.llm.metering import UsageMeter
from services.llm.ports import Usage
from tests.support import make_settings

pytestmark = pytest.mark.timeout(30)


async def test_token_events_share_the_api_calls_spool_write(tmp_path: Path) -> None:
    recorder = SpoolingUsageRecorder(make_settings(tmp_path / "home"), "llm")
    spool = recorder._spool
    groups: list[int] = []
    insert = spool._insert

    def counted(rows: list[tuple[str, bytes]]) -> None:
        groups.append(len(rows))
        insert(rows)

    spool._insert = counted  # type: ignore[method-assign]
    meter = UsageMeter(recorder)
    try:
        # As LlmServicer does: start the token events, one loop step, then (after the handler
        # returned) the interceptor records api_calls and waits for it.
        tasks = meter.start("acme", model="m", provider="openai", usage=Usage(5, 7))
        await asyncio.sleep(0)
        await recorder.record(meter=API_CALLS, tenant_id="acme", value=1, dimensions={"method": "Chat"})
        # api_calls durable => the token events are durable too (same write).
        with sqlite3.connect(recorder.path) as db:
            assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 3
        assert groups == [3]
        await asyncio.gather(*tasks)
    finally:
        await recorder.close()


async def test_record_waits_and_skips_zero_counts(tmp_path: Path) -> None:
    recorder = SpoolingUsageRecorder(make_settings(tmp_path / "home"), "llm")
    try:
        await UsageMeter(recorder).record("acme", model="m", provider="openai", usage=Usage(4, 0))
        with sqlite3.connect(recorder.path) as db:
            assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 1
        assert UsageMeter(None).start("acme", model="m", provider="p", usage=Usage(1, 1)) == []
    finally:
        await recorder.close()
