"""Azure Blob backend configuration: what a tenant's ObjectStoreBinding (plus its resolved
secret) means.

The secret holds one of: `connection_string`; `account_key` (with `account_name`, or the name
taken from the account URL); `sas_token`. Only an account key can sign URLs (SAS): a SAS-only
binding declares sign_url unsupported.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlparse

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

KIB = 1024
MIB = 1024 * KIB
DEFAULT_PART_SIZE = 8 * MIB
MIN_PART_SIZE = 64 * KIB
MAX_PART_SIZE = 4000 * MIB  # Azure's largest block
MAX_BLOCKS = 50_000

_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")
_RULES = ObjectBindingRules(
    bucket_ok=lambda name: bool(_CONTAINER_RE.match(name)),
    bad_bucket="not a valid Azure container name",
    bad_endpoint="must be the blob account URL (http(s)://...)",
    options=OptionRules(
        backend="azure_blob",
        ints={
            **OBJECT_INTS,
            "part_size_bytes": (MIN_PART_SIZE, MAX_PART_SIZE),
            "download_chunk_bytes": (64 * KIB, 64 * MIB),
        },
        floats=OBJECT_FLOATS,
        flags=OBJECT_FLAGS,
        # The account's Azure region (TenantService's residency check).
        others={
            "location": lambda v: (
                None
                if re.fullmatch(r"[a-z0-9]{2,40}", v)
                else "must be an Azure region name such as japaneast"
            )
        },
    ),
)


@dataclass(frozen=True)
class BlobConfig:
    tenant_id: str
    container: str
    account_url: str
    account_name: str
    part_size: int = DEFAULT_PART_SIZE
    # Each part in flight costs about twice its size (our copy + the HTTP stack's), so one
    # upload holds about (2 * upload_concurrency + 1) * part_size bytes.
    upload_concurrency: int = 2
    max_attempts: int = 4
    download_chunk: int = 4 * MIB
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    account_key: str | None = field(default=None, repr=False, compare=False)
    sas_token: str | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """How errors name the binding (never the secret)."""
        return (
            f"object store binding of tenant '{self.tenant_id}' "
            f"(azure_blob account '{self.account_name}', container '{self.container}')"
        )

    @property
    def can_sign(self) -> bool:
        return self.account_key is not None


def default_container(tenant_id: str) -> str:
    """{tenant_id}-assets (architecture document). Tenant ids Azure cannot take as they are
    (over 63 characters with the suffix, or with '--') get a cleaned head plus a hash of the
    whole id, so two tenants never share a container."""
    name = f"{tenant_id}-assets"
    if _CONTAINER_RE.match(name):
        return name
    digest = hashlib.sha256(tenant_id.encode()).hexdigest()[:10]
    head = re.sub(r"-+", "-", tenant_id)[: 63 - len("--assets") - len(digest)].strip("-")
    return f"{head}-{digest}-assets"


def parse_connection_string(value: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in value.split(";"):
        if "=" in item:
            k, v = item.split("=", 1)
            parts[k.strip()] = v.strip()
    return parts


def _account_from_url(url: str) -> str:
    parsed = urlparse(url)
    host = parsed.hostname or ""
    if re.match(r"^[a-z0-9]+\.blob\.", host):
        return host.split(".", 1)[0]
    # Emulators and IP endpoints put the account in the path: http://127.0.0.1:10000/devstoreaccount1
    return parsed.path.strip("/").split("/", 1)[0]


def binding_violations(
    binding: tenant_pb2.ObjectStoreBinding, prefix: str = "object_store"
) -> list[tuple[str, str]]:
    """Field violations of an Azure Blob binding (TenantService answers INVALID_ARGUMENT with them)."""
    return _RULES.violations(binding, prefix)


def config_from_binding(
    tenant_id: str,
    binding: tenant_pb2.ObjectStoreBinding,
    credentials: Mapping[str, str] | None,
) -> BlobConfig:
    """FailedPrecondition (binding misconfigured) when the stored binding is not usable."""
    container = binding.bucket or default_container(tenant_id)
    problems = binding_violations(binding)
    creds = dict(credentials or {})
    conn = parse_connection_string(creds["connection_string"]) if creds.get("connection_string") else {}
    account_key = creds.get("account_key") or conn.get("AccountKey") or None
    sas = (creds.get("sas_token") or conn.get("SharedAccessSignature") or "").lstrip("?") or None
    account_name = creds.get("account_name") or conn.get("AccountName") or ""
    account_url = binding.endpoint or conn.get("BlobEndpoint") or ""
    if not account_url and account_name:
        suffix = conn.get("EndpointSuffix", "core.windows.net")
        account_url = f"{conn.get('DefaultEndpointsProtocol', 'https')}://{account_name}.blob.{suffix}"
    account_url = account_url.rstrip("/")
    if not account_name and account_url:
        account_name = _account_from_url(account_url)
    if not account_url:
        problems.append(("object_store.endpoint", "needed (or an account name in the secret)"))
    if account_key is None and sas is None:
        problems.append(
            (
                "object_store.credentials_secret_ref",
                "secret must hold connection_string, account_key or sas_token",
            )
        )
    raise_if_misconfigured(
        problems,
        f"object store binding of tenant '{tenant_id}' (azure_blob container '{container}')",
        binding="object_store",
        backend="azure_blob",
    )
    opts = dict(binding.options)
    return BlobConfig(
        tenant_id=tenant_id,
        container=container,
        account_url=account_url,
        account_name=account_name,
        part_size=int(opts.get("part_size_bytes", DEFAULT_PART_SIZE)),
        upload_concurrency=int(opts.get("upload_concurrency", 2)),
        max_attempts=int(opts.get("max_attempts", 4)),
        download_chunk=int(opts.get("download_chunk_bytes", 4 * MIB)),
        connect_timeout=float(opts.get("connect_timeout_seconds", 5.0)),
        read_timeout=float(opts.get("read_timeout_seconds", 60.0)),
        account_key=account_key,
        sas_token=sas if account_key is None else None,
    )
