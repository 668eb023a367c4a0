"""The SQLAlchemy async engine of a service's own store (TenantService, MeteringService): SQLite
in development, PostgreSQL otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def async_engine(url: str, sqlite_pragmas: Sequence[str]) -> AsyncEngine:
    """PostgreSQL: a pool that pings before use. SQLite: the file's directory made, and the
    given PRAGMAs run on every new connection (they are per connection)."""
    if sa.make_url(url).get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    engine = create_async_engine(url)
    database = engine.url.database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        for pragma in sqlite_pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    return engine
