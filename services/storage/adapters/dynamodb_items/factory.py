"""Registry factory (services/storage/registry.py): a tenant's ItemStoreBinding -> adapter
(secret resolution and optional auto_provision: services/storage/adapters/store_factory.py)."""

from services.storage.adapters.dynamodb_items.config import DynamoDbItemConfig
from services.storage.adapters.dynamodb_items.store import DynamoDbItemStore
from services.storage.adapters.store_factory import item_store_factory

build = item_store_factory(DynamoDbItemConfig.from_binding, DynamoDbItemStore)
