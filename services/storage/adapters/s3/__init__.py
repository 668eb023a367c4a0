"""S3 object-store backend (AWS S3 and S3-compatible stores such as MinIO, R2), OpenDAL style:

config (binding -> S3Config, presets), errors (mapping + retries), metadata (how our metadata
sits in S3), writer (PutObject / multipart upload), reader (streamed, ranged), lister (pages),
backend (the ObjectStore port), factory (the registry's build()).

Capabilities: sign_url yes (SigV4 presigned GET/PUT, at most 7 days); if_none_match yes
(If-None-Match: * on PutObject and CompleteMultipartUpload; binding option
conditional_writes=false declares it off for stores without it); ranged_read yes.
Binding options: preset (aws | minio | r2 | compatible), part_size_bytes (>= 5 MiB, default
8 MiB), upload_concurrency (2), list_head_concurrency (16), max_attempts (4),
connect_timeout_seconds (5), read_timeout_seconds (60), conditional_writes (true),
auto_provision (false).
"""

from services.storage.adapters.s3.backend import S3ObjectStore
from services.storage.adapters.s3.config import (
    S3Config,
    binding_violations,
    config_from_binding,
    default_bucket,
)
from services.storage.adapters.s3.factory import build, parse_secret

__all__ = [
    "S3Config",
    "S3ObjectStore",
    "binding_violations",
    "build",
    "config_from_binding",
    "default_bucket",
    "parse_secret",
]
