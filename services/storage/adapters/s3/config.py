"""The s3 backend's configuration lives in services/common/bindings/s3.py (TenantService
validates bindings with the same code); this module keeps the adapter's import path."""

from services.common.bindings.s3 import *  # noqa: F403
