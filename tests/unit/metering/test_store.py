"""The SQL store's schema and configuration, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.common.metering_client import MeterEvent
from services.metering.adapters.database import VERSION_TABLE
from services.metering.adapters.sql_store import SqlMeteringStore
from services.metering.adapters.sql_tables import metadata
from services.metering.config import database_url
from tests.support import make_settings


@pytest.fixture
async def store(store_url: str | None, tmp_path: Path) -> SqlMeteringStore:
    url = store_url or f"sqlite+aiosqlite:///{tmp_path / 'm.sqlite3'}"
    return await SqlMeteringStore.open(url)


async def test_migrations_match_the_tables(store: SqlMeteringStore) -> None:
    def diff(conn: sa.Connection) -> list[object]:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return list(compare_metadata(ctx, metadata))

    try:
        async with store.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
            names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        assert {"usage_events", "price_plans", VERSION_TABLE} <= names
    finally:
        await store.close()


async def test_reopening_migrates_nothing_and_keeps_data(
    store: SqlMeteringStore, store_url: str | None
) -> None:
    when = datetime(2025, 4, 1, tzinfo=UTC)
    try:
        tenant = f"t-{id(store):x}"[:20]
        event = MeterEvent(f"{tenant}-1", "test", "api_calls", tenant, when, 3, {"k": "v"})
        assert await store.insert_events([event]) == 1
        url = store.engine.url.render_as_string(hide_password=False)
        again = await SqlMeteringStore.open(url)
        try:
            assert await again.insert_events([event]) == 0
            assert await again.balance_before(tenant_id=tenant, meter="api_calls", before_us=2**62) == 3
            assert (await again.get_plan("default")) is not None
        finally:
            await again.close()
    finally:
        await store.close()


def test_database_url_defaults_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path / "home")
    monkeypatch.delenv("MAKOTO_METERING_DB_URL", raising=False)
    expected = (settings.data_dir / "metering.sqlite3").resolve()
    assert database_url(settings) == f"sqlite+aiosqlite:///{expected}"
    monkeypatch.setenv("MAKOTO_METERING_DB_URL", "postgresql+asyncpg://postgres@127.0.0.1/x")
    assert database_url(settings) == "postgresql+asyncpg://postgres@127.0.0.1/x"
    assert database_url(settings, "sqlite+aiosqlite:///y") == "sqlite+aiosqlite:///y"
