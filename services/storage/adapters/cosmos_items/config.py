"""The cosmos_items backend's configuration lives in services/common/bindings/cosmos.py (TenantService
validates bindings with the same code); this module keeps the adapter's import path."""

from services.common.bindings.cosmos import *  # noqa: F403
