"""DynamoDB item store: config.py (binding -> settings), codec.py (key layout, attribute
encoding, size rule), errors.py (error mapping, throttling retries), store.py (the adapter)."""

from services.storage.adapters.dynamodb_items.config import DynamoDbItemConfig, RetryPolicy
from services.storage.adapters.dynamodb_items.factory import build
from services.storage.adapters.dynamodb_items.store import DynamoDbItemStore

__all__ = ["DynamoDbItemConfig", "DynamoDbItemStore", "RetryPolicy", "build"]
