"""Registry factory (services/storage/registry.py): a tenant's ItemStoreBinding -> adapter
(secret resolution and optional auto_provision: services/storage/adapters/store_factory.py)."""

from services.storage.adapters.cosmos_items.config import CosmosItemConfig
from services.storage.adapters.cosmos_items.store import CosmosItemStore
from services.storage.adapters.store_factory import item_store_factory

build = item_store_factory(CosmosItemConfig.from_binding, CosmosItemStore)
