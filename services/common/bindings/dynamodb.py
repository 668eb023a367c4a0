"""How a tenant's DynamoDB item store is reached: built from its ItemStoreBinding.

Binding fields: endpoint (empty: AWS's regional endpoint; set for DynamoDB Local or moto),
region (default us-east-1), database (the table; empty: `makoto-{tenant_id}-items`, the
architecture document's naming), credentials_secret_ref (resolved before it gets here; the
secret holds `{"access_key_id": ..., "secret_access_key": ..., "session_token": ...}` as JSON
or `ACCESS_KEY_ID:SECRET_ACCESS_KEY`; no secret: the default AWS credential chain).
Options: max_attempts (throttled calls, default 6), retry_base_seconds (0.05),
retry_cap_seconds (2.0), connect_timeout_seconds (3), read_timeout_seconds (10).
auto_provision ("true": the registry factory provisions the tenant's resources on first use;
dev setups only, the control plane provisions otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import SecretStr

from services.common.bindings.aws_keys import aws_keys
from services.common.bindings.syntax import raise_if_misconfigured
from services.common.errors import FailedPrecondition

if TYPE_CHECKING:
    from makoto.tenant.v1 import tenant_pb2


_NUMBER_OPTIONS = (
    "max_attempts",
    "retry_base_seconds",
    "retry_cap_seconds",
    "connect_timeout_seconds",
    "read_timeout_seconds",
)


def binding_violations(
    binding: tenant_pb2.ItemStoreBinding, prefix: str = "item_store"
) -> list[tuple[str, str]]:
    """What needs no secret: numeric options are numbers (the region defaults to us-east-1)."""
    out: list[tuple[str, str]] = []
    for name in _NUMBER_OPTIONS:
        value = binding.options.get(name)
        if value is None:
            continue
        try:
            float(value)
        except ValueError:
            out.append((f"{prefix}.options[{name}]", "must be a number"))
    return out


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_seconds: float = 0.05
    cap_seconds: float = 2.0


@dataclass(frozen=True)
class DynamoDbItemConfig:
    table: str
    region: str = "us-east-1"
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connect_timeout_seconds: float = 3.0
    read_timeout_seconds: float = 10.0

    @property
    def describe(self) -> str:
        """How errors name the binding (never a secret)."""
        return f"item_store binding (dynamodb table {self.table!r})"

    @classmethod
    def from_binding(
        cls, tenant_id: str, binding: tenant_pb2.ItemStoreBinding, secret: str | None
    ) -> DynamoDbItemConfig:
        table = binding.database or f"makoto-{tenant_id}-items"
        raise_if_misconfigured(
            binding_violations(binding),
            f"item_store binding (dynamodb table {table!r})",
            binding="item_store",
            backend="dynamodb",
        )
        options = dict(binding.options)
        access_key_id, secret_key, token = _parse_secret(secret, table)
        try:
            retry = RetryPolicy(
                max_attempts=max(1, int(options.get("max_attempts", 6))),
                base_seconds=float(options.get("retry_base_seconds", 0.05)),
                cap_seconds=float(options.get("retry_cap_seconds", 2.0)),
            )
            connect_timeout = float(options.get("connect_timeout_seconds", 3.0))
            read_timeout = float(options.get("read_timeout_seconds", 10.0))
        except ValueError as exc:
            raise FailedPrecondition(
                f"item_store binding (dynamodb table {table!r}): a numeric option is not a number",
                reason="BINDING_INVALID",
                metadata={"binding": "item_store", "backend": "dynamodb"},
            ) from exc
        return cls(
            table=table,
            region=binding.region or "us-east-1",
            endpoint_url=binding.endpoint or None,
            access_key_id=access_key_id,
            secret_access_key=SecretStr(secret_key) if secret_key is not None else None,
            session_token=SecretStr(token) if token else None,
            retry=retry,
            connect_timeout_seconds=connect_timeout,
            read_timeout_seconds=read_timeout,
        )


def _parse_secret(secret: str | None, table: str) -> tuple[str | None, str | None, str | None]:
    if secret is None or secret == "":
        return None, None, None
    keys = aws_keys(secret)
    if keys is not None:
        return keys
    # Say what is wrong with the secret's shape, never what it contains.
    raise FailedPrecondition(
        f"item_store binding (dynamodb table {table!r}): the credentials secret is not "
        'JSON {"access_key_id", "secret_access_key"} nor ACCESS_KEY_ID:SECRET_ACCESS_KEY',
        reason="BINDING_CREDENTIALS_INVALID",
        metadata={"binding": "item_store", "backend": "dynamodb"},
    )
