"""Registry factory (services/storage/registry.py): a tenant's ItemStoreBinding -> adapter
(secret resolution and optional auto_provision: services/storage/adapters/store_factory.py)."""

from services.storage.adapters.postgres_items.config import PostgresItemConfig
from services.storage.adapters.postgres_items.store import PostgresItemStore
from services.storage.adapters.store_factory import item_store_factory

build = item_store_factory(PostgresItemConfig.from_binding, PostgresItemStore)
