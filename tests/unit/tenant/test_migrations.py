"""Alembic migrations on SQLite and PostgreSQL: they build exactly the schema the code uses,
run again harmlessly, and go down and up cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from services.tenant.db import downgrade, make_engine, migrate
from services.tenant.schema import VERSION_TABLE, metadata

TABLES = {"tenants", "idempotency", "users", "provisioning_steps", "operations", "api_keys"}


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'tenant.sqlite3'}"


def _tables(conn: Connection) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def _diff(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
    return list(compare_metadata(context, metadata))


def _version(conn: Connection) -> str | None:
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


async def test_migrations_build_the_schema_the_code_uses(any_db: str) -> None:
    engine = make_engine(any_db)
    try:
        await migrate(engine)
        await migrate(engine)  # every start runs it: the second run changes nothing
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == TABLES | {VERSION_TABLE}
            assert await conn.run_sync(_version) == "0003"
            assert await conn.run_sync(_diff) == []

        await downgrade(engine, "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) & TABLES == set()
            assert await conn.run_sync(_version) is None

        await migrate(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == TABLES | {VERSION_TABLE}
    finally:
        await engine.dispose()


async def test_unique_email_per_tenant_is_enforced_by_the_database(any_db: str) -> None:
    from datetime import UTC, datetime

    from services.tenant.schema import tenants, users

    engine = make_engine(any_db)
    now = datetime.now(UTC)
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            await conn.execute(
                tenants.insert().values(
                    tenant_id="dbt",
                    display_name="",
                    state="ACTIVE",
                    state_reason="",
                    cloud_provider="LOCAL",
                    region="",
                    features=[],
                    bindings={},
                    price_plan_id="",
                    etag="e",
                    create_time=now,
                    update_time=now,
                )
            )
            await conn.execute(
                users.insert().values(
                    user_id="u-1", tenant_id="dbt", email="a@b.c", role="MEMBER", create_time=now
                )
            )
        with pytest.raises(sa.exc.IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(
                    users.insert().values(
                        user_id="u-2", tenant_id="dbt", email="a@b.c", role="MEMBER", create_time=now
                    )
                )
        with pytest.raises(sa.exc.IntegrityError):  # foreign key to tenants
            async with engine.begin() as conn:
                await conn.execute(
                    users.insert().values(
                        user_id="u-3", tenant_id="nope", email="x@b.c", role="MEMBER", create_time=now
                    )
                )
        async with engine.connect() as conn:
            stored = (await conn.execute(sa.select(tenants.c.create_time))).scalar_one()
        assert stored == now  # aware UTC in and out, on both dialects
    finally:
        await engine.dispose()
