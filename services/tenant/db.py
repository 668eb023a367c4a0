"""The tenant database: URL from configuration, engine, and Alembic migrations run at start.

MAKOTO_TENANT_DB_URL selects the database (any SQLAlchemy async URL, e.g.
postgresql+asyncpg://user@host/db); the embedded default is SQLite at <data_dir>/tenant.sqlite3.
The URL may hold a password: it is never logged.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.config import MeshSettings
from services.common.sql_engine import async_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Serialises concurrent starts migrating one PostgreSQL database (any constant; "MKTN").
_PG_MIGRATION_LOCK = 0x4D4B544E


class TenantDbSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAKOTO_TENANT_", extra="ignore")

    db_url: str | None = None


def database_url(settings: MeshSettings) -> str:
    configured = TenantDbSettings().db_url
    if configured:
        return configured
    return f"sqlite+aiosqlite:///{settings.data_dir / 'tenant.sqlite3'}"


def make_engine(url: str) -> AsyncEngine:
    # WAL: readers never wait for the writer; busy_timeout: writers queue instead of failing.
    return async_engine(url, ("journal_mode=WAL", "busy_timeout=5000", "foreign_keys=ON"))


def alembic_config() -> Config:
    """Alembic configuration without an ini file (the scripts sit next to this module)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision` (idempotent; run at every start)."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        await conn.run_sync(_run, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_run, "downgrade", revision)


def _run(connection: Connection, action: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    if action == "upgrade":
        command.upgrade(cfg, revision)
    else:
        command.downgrade(cfg, revision)
