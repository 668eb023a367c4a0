"""PostgreSQL item store: config.py (binding -> settings, schema naming), errors.py (SQLSTATE
mapping), store.py (the adapter; table layout in its docstring). Attribute encoding:
services/storage/item_codec.py."""

from services.storage.adapters.postgres_items.config import PostgresItemConfig, schema_for
from services.storage.adapters.postgres_items.factory import build
from services.storage.adapters.postgres_items.store import PostgresItemStore

__all__ = ["PostgresItemConfig", "PostgresItemStore", "build", "schema_for"]
