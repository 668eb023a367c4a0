"""The postgres_items backend's configuration lives in services/common/bindings/postgres.py (TenantService
validates bindings with the same code); this module keeps the adapter's import path."""

from services.common.bindings.postgres import *  # noqa: F403
