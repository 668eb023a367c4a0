"""S3 backend configuration: what a tenant's ObjectStoreBinding (plus its resolved secret) means.

S3-compatible services are presets of this one backend (as in OpenDAL), not copies of it: a
preset only changes defaults such as path-style addressing, the region and whether the SDK's
newer default checksums are sent (several S3-compatible stores reject them).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.common.bindings.syntax import (
    OBJECT_FLAGS,
    OBJECT_FLOATS,
    OBJECT_INTS,
    ObjectBindingRules,
    OptionRules,
    raise_if_misconfigured,
)

if TYPE_CHECKING:
    from makoto.tenant.v1 import tenant_pb2

MIB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MIB
MIN_PART_SIZE = 5 * MIB  # S3 refuses smaller parts except the last one
MAX_PART_SIZE = 5 * 1024 * MIB
MAX_PARTS = 10_000
DEFAULT_REGION = "us-east-1"

# preset -> (path_style, region, checksums "when_supported" | "when_required")
PRESETS: dict[str, tuple[bool | None, str | None, str]] = {
    "aws": (None, None, "when_supported"),
    "minio": (True, DEFAULT_REGION, "when_required"),
    "r2": (None, "auto", "when_required"),
    "compatible": (None, None, "when_required"),
}

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# kms_key_id: SSE-KMS key TenantService provisions a managed bucket with.
_RULES = ObjectBindingRules(
    bucket_ok=lambda name: bool(_BUCKET_RE.match(name)) and ".." not in name,
    bad_bucket="not a valid S3 bucket name",
    bad_endpoint="must be an http(s) URL",
    options=OptionRules(
        backend="s3",
        ints={
            **OBJECT_INTS,
            "part_size_bytes": (MIN_PART_SIZE, MAX_PART_SIZE),
            "list_head_concurrency": (1, 64),
        },
        floats=OBJECT_FLOATS,
        flags=(*OBJECT_FLAGS, "conditional_writes"),
        others={
            "preset": lambda v: None if v in PRESETS else f"must be one of {sorted(PRESETS)}",
            "kms_key_id": lambda v: None if 1 <= len(v) <= 2048 else "must be a KMS key id, alias or ARN",
            # Where an S3-compatible store (no AWS region) keeps data: TenantService's residency check.
            "location": lambda v: None if re.fullmatch(r"[a-z0-9-]{2,40}", v) else "must be a region name",
        },
    ),
)


@dataclass(frozen=True)
class S3Config:
    tenant_id: str
    bucket: str
    region: str = DEFAULT_REGION
    endpoint_url: str | None = None
    path_style: bool = False
    part_size: int = DEFAULT_PART_SIZE
    # Each part in flight costs about twice its size (our copy + the HTTP stack's), so one
    # upload holds about (2 * upload_concurrency + 1) * part_size bytes.
    upload_concurrency: int = 2
    list_head_concurrency: int = 16
    max_attempts: int = 4
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    # False for S3-compatible stores without If-None-Match on writes: create-only writes are then
    # declared unsupported instead of being silently unconditional.
    conditional_writes: bool = True
    checksums: str = "when_supported"
    # access_key_id, secret_access_key, session_token; None = the SDK's default chain.
    credentials: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """How errors name the binding (never the secret)."""
        return f"object store binding of tenant '{self.tenant_id}' (s3 bucket '{self.bucket}')"


def default_bucket(tenant_id: str) -> str:
    """makoto-{tenant_id}-assets (architecture document); a tenant id too long for S3's 63
    characters keeps a readable head plus a hash of the whole id, so names stay unique."""
    name = f"makoto-{tenant_id}-assets"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(tenant_id.encode()).hexdigest()[:10]
    head = tenant_id[: 63 - len("makoto---assets") - len(digest)].rstrip("-")
    return f"makoto-{head}-{digest}-assets"


def binding_violations(
    binding: tenant_pb2.ObjectStoreBinding, prefix: str = "object_store"
) -> list[tuple[str, str]]:
    """Field violations of an S3 binding (TenantService can answer INVALID_ARGUMENT with them)."""
    return _RULES.violations(binding, prefix)


def config_from_binding(
    tenant_id: str,
    binding: tenant_pb2.ObjectStoreBinding,
    credentials: Mapping[str, str] | None,
) -> S3Config:
    """FailedPrecondition (binding misconfigured) when the stored binding is not usable."""
    bucket = binding.bucket or default_bucket(tenant_id)
    problems = binding_violations(binding)
    if credentials is not None and not (
        credentials.get("access_key_id") and credentials.get("secret_access_key")
    ):
        problems.append(
            ("object_store.credentials_secret_ref", "secret must hold access_key_id and secret_access_key")
        )
    raise_if_misconfigured(
        problems,
        f"object store binding of tenant '{tenant_id}' (s3 bucket '{bucket}')",
        binding="object_store",
        backend="s3",
    )
    opts = dict(binding.options)
    endpoint = binding.endpoint or None
    preset = opts.get("preset", "aws" if endpoint is None else "compatible")
    preset_path_style, preset_region, checksums = PRESETS[preset]
    return S3Config(
        tenant_id=tenant_id,
        bucket=bucket,
        region=binding.region or preset_region or DEFAULT_REGION,
        endpoint_url=endpoint,
        path_style=binding.path_style or bool(preset_path_style),
        part_size=int(opts.get("part_size_bytes", DEFAULT_PART_SIZE)),
        upload_concurrency=int(opts.get("upload_concurrency", 2)),
        list_head_concurrency=int(opts.get("list_head_concurrency", 16)),
        max_attempts=int(opts.get("max_attempts", 4)),
        connect_timeout=float(opts.get("connect_timeout_seconds", 5.0)),
        read_timeout=float(opts.get("read_timeout_seconds", 60.0)),
        conditional_writes=opts.get("conditional_writes", "true").lower() == "true",
        checksums=checksums,
        credentials=dict(credentials) if credentials is not None else None,
    )
