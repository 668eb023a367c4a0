"""Engine creation and schema migrations (Alembic, run at start) for the metering store."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.sql_engine import async_engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Its own version table, so the metering schema can share a PostgreSQL database with others.
VERSION_TABLE = "metering_alembic_version"


def create_engine(url: str) -> AsyncEngine:
    # WAL: readers do not block the writer; busy_timeout: writers queue instead of failing
    # (30 s: a starved box once held the write lock past 10 s and a RecordUsage failed).
    return async_engine(url, ("journal_mode=WAL", "busy_timeout=30000", "synchronous=NORMAL"))


def _alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = VERSION_TABLE
    return config


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent)."""

    def upgrade(connection: sa.Connection) -> None:
        command.upgrade(_alembic_config(connection), "head")

    async with engine.begin() as conn:
        await conn.run_sync(upgrade)
