"""The azure_blob backend's configuration lives in services/common/bindings/azure_blob.py (TenantService
validates bindings with the same code); this module keeps the adapter's import path."""

from services.common.bindings.azure_blob import *  # noqa: F403
