"""Alembic environment of the metering store. Run through
services.metering.adapters.database.migrate(), which hands over an open connection."""

from __future__ import annotations

from alembic import context

from services.metering.adapters.sql_tables import metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("run migrations with services.metering.adapters.database.migrate()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=context.config.attributes.get("version_table", "metering_alembic_version"),
    # SQLite alters tables by copy-and-move; a no-op on PostgreSQL.
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
