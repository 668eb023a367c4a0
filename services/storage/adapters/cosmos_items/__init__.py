"""Cosmos DB item store: config.py (binding -> settings), errors.py (error mapping),
store.py (the adapter; document layout in its docstring). Attribute encoding:
services/storage/item_codec.py."""

from services.storage.adapters.cosmos_items.config import CosmosItemConfig
from services.storage.adapters.cosmos_items.factory import build
from services.storage.adapters.cosmos_items.store import CosmosItemStore

__all__ = ["CosmosItemConfig", "CosmosItemStore", "build"]
