"""Azure Blob object-store backend, OpenDAL style:

config (binding + secret -> BlobConfig), errors (mapping + retries), metadata (how our metadata
sits in blob metadata), names (blob names whose listing order is byte order), writer (Put Blob /
staged blocks + Put Block List), reader (streamed, ranged), lister (pages), backend (the
ObjectStore port), factory (the registry's build()).

Capabilities: sign_url only with an account key (service SAS, at most 7 days; a SAS-token-only
binding declares it off); if_none_match yes (If-None-Match: * on Put Blob / Put Block List);
ranged_read yes. Binding options: part_size_bytes (block size, >= 64 KiB, default 8 MiB),
upload_concurrency (2), download_chunk_bytes (4 MiB), max_attempts (4),
connect_timeout_seconds (5), read_timeout_seconds (60), auto_provision (false).
"""

from services.storage.adapters.azure_blob.backend import AzureBlobObjectStore
from services.storage.adapters.azure_blob.config import (
    BlobConfig,
    binding_violations,
    config_from_binding,
    default_container,
)
from services.storage.adapters.azure_blob.factory import build, parse_secret

__all__ = [
    "AzureBlobObjectStore",
    "BlobConfig",
    "binding_violations",
    "build",
    "config_from_binding",
    "default_container",
    "parse_secret",
]
