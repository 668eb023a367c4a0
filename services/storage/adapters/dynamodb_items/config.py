"""The dynamodb_items backend's configuration lives in services/common/bindings/dynamodb.py (TenantService
validates bindings with the same code); this module keeps the adapter's import path."""

from services.common.bindings.dynamodb import *  # noqa: F403
