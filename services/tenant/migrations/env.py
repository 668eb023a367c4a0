"""Alembic environment for the tenant database.

The server runs migrations programmatically (services.tenant.db.migrate) and hands over its open
connection in `config.attributes["connection"]`. Run by hand (Alembic CLI with
script_location pointing here), the URL comes from `-x url=...` or MAKOTO_TENANT_DB_URL.
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from services.tenant.schema import VERSION_TABLE, metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things: later migrations use batch mode there.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("MAKOTO_TENANT_DB_URL")
    if not url:
        raise SystemExit("tenant migrations: give -x url=... or set MAKOTO_TENANT_DB_URL")
    return url


async def _run_online(url: str) -> None:
    from services.tenant.db import make_engine

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_configure)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, version_table=VERSION_TABLE, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _configure(given)
else:
    asyncio.run(_run_online(_url()))
