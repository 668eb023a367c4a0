"""How a tenant's PostgreSQL item store is reached: built from its ItemStoreBinding.

Binding fields: endpoint (a DSN without password, e.g. postgresql://makoto@db.example:5432/items;
the database in it may be the tenant's own), database (the schema; empty: `makoto_{tenant_id}`
with '-' -> '_', the platform's naming), credentials_secret_ref (resolved before it gets here:
the password; none for trust / peer setups). A DSN that embeds a password is refused: secrets
live in the secret store, never in tenant config.
Options: pool_min_size (0), pool_max_size (5), connect_timeout_seconds (5),
command_timeout_seconds (30).
auto_provision ("true": the registry factory provisions the tenant's resources on first use;
dev setups only, the control plane provisions otherwise).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import SecretStr

from services.common.bindings.syntax import raise_if_misconfigured
from services.common.errors import FailedPrecondition

if TYPE_CHECKING:
    from makoto.tenant.v1 import tenant_pb2

_META = {"binding": "item_store", "backend": "postgres"}
MAX_IDENTIFIER = 63  # PostgreSQL truncates longer identifiers: names must stay distinct


def schema_for(tenant_id: str) -> str:
    name = "makoto_" + tenant_id.replace("-", "_")
    if len(name) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha256(tenant_id.encode()).hexdigest()[:10]
    return f"{name[: MAX_IDENTIFIER - 11]}_{digest}"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def binding_violations(
    binding: tenant_pb2.ItemStoreBinding, prefix: str = "item_store"
) -> list[tuple[str, str]]:
    """What needs no secret: a postgresql:// DSN without a password, a schema name that fits."""
    out: list[tuple[str, str]] = []
    try:
        parts = urlsplit(binding.endpoint)
        ok = parts.scheme in ("postgresql", "postgres") and bool(parts.hostname)
        has_password = parts.password is not None or "password=" in (parts.query or "")
    except ValueError:
        ok, has_password = False, False
    if not ok:
        out.append((f"{prefix}.endpoint", "POSTGRES needs a postgresql://user@host[:port]/database DSN"))
    elif has_password:
        out.append((f"{prefix}.endpoint", "must not embed a password; use credentials_secret_ref"))
    if len(binding.database) > MAX_IDENTIFIER:
        out.append((f"{prefix}.database", f"schema names are at most {MAX_IDENTIFIER} characters"))
    return out


@dataclass(frozen=True)
class PostgresItemConfig:
    dsn: str
    schema: str
    password: SecretStr | None = None
    # The schema is the platform's own (named by convention): deprovision may drop it whole.
    platform_schema: bool = True
    pool_min_size: int = 0
    pool_max_size: int = 5
    connect_timeout_seconds: float = 5.0
    command_timeout_seconds: float = 30.0

    @property
    def describe(self) -> str:
        """How errors name the binding (host and database, never the password)."""
        parts = urlsplit(self.dsn)
        where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path or ''}"
        return f"item_store binding (postgres {where}, schema {self.schema!r})"

    @classmethod
    def from_binding(
        cls, tenant_id: str, binding: tenant_pb2.ItemStoreBinding, secret: str | None
    ) -> PostgresItemConfig:
        schema = binding.database or schema_for(tenant_id)
        describe = f"item_store binding (postgres, schema {schema!r})"
        raise_if_misconfigured(
            binding_violations(binding), describe, binding="item_store", backend="postgres"
        )
        # binding_violations refused a DSN that is not postgresql://, embeds a password or
        # names a schema too long; schema_for always fits.
        dsn = binding.endpoint
        options = dict(binding.options)
        try:
            return cls(
                dsn=dsn,
                schema=schema,
                password=SecretStr(secret) if secret else None,
                platform_schema=not binding.database,
                pool_min_size=int(options.get("pool_min_size", 0)),
                pool_max_size=int(options.get("pool_max_size", 5)),
                connect_timeout_seconds=float(options.get("connect_timeout_seconds", 5.0)),
                command_timeout_seconds=float(options.get("command_timeout_seconds", 30.0)),
            )
        except ValueError:
            raise FailedPrecondition(
                f"{describe}: a numeric option is not a number", reason="BINDING_INVALID", metadata=_META
            ) from None
