"""How a tenant's Cosmos DB item store is reached: built from its ItemStoreBinding.

Binding fields: endpoint (the account URI, required), database (empty: `makoto-{tenant_id}`,
the architecture document's naming; deprovision then drops the whole database, otherwise only
the container), credentials_secret_ref (resolved before it gets here: the account key).
Options: container (default "items"), connection_verify ("false" only for the local emulator
and its self-signed certificate), endpoint_discovery ("false" for emulators on plain HTTP),
throttle_retries (429s the SDK retries honouring x-ms-retry-after-ms, default 3),
throttle_max_wait_seconds (5), timeout_seconds (10), throughput (RU/s at provision; empty:
serverless or the database's shared throughput).
auto_provision ("true": the registry factory provisions the tenant's resources on first use;
dev setups only, the control plane provisions otherwise).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import SecretStr

from services.common.bindings.syntax import raise_if_misconfigured
from services.common.errors import FailedPrecondition

if TYPE_CHECKING:
    from makoto.tenant.v1 import tenant_pb2

_META = {"binding": "item_store", "backend": "cosmos"}


def _flag(value: str, name: str, describe: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise FailedPrecondition(
        f"{describe}: option {name} must be true or false", reason="BINDING_INVALID", metadata=_META
    )


def binding_violations(
    binding: tenant_pb2.ItemStoreBinding, prefix: str = "item_store"
) -> list[tuple[str, str]]:
    """What needs no secret: the account URI is required."""
    if not binding.endpoint:
        return [(f"{prefix}.endpoint", "COSMOS needs the account URL as endpoint")]
    return []


@dataclass(frozen=True)
class CosmosItemConfig:
    endpoint: str
    key: SecretStr
    database: str
    container: str = "items"
    # The database is the platform's own (named by convention): deprovision may drop it.
    platform_database: bool = True
    connection_verify: bool = True
    endpoint_discovery: bool = True
    throttle_retries: int = 3
    throttle_max_wait_seconds: int = 5
    timeout_seconds: int = 10
    throughput: int | None = None

    @property
    def describe(self) -> str:
        """How errors name the binding (never the key)."""
        return f"item_store binding (cosmos database {self.database!r}, container {self.container!r})"

    @classmethod
    def from_binding(
        cls, tenant_id: str, binding: tenant_pb2.ItemStoreBinding, secret: str | None
    ) -> CosmosItemConfig:
        database = binding.database or f"makoto-{tenant_id}"
        options = dict(binding.options)
        container = options.get("container", "items")
        describe = f"item_store binding (cosmos database {database!r}, container {container!r})"
        raise_if_misconfigured(binding_violations(binding), describe, binding="item_store", backend="cosmos")
        if not secret:
            raise FailedPrecondition(
                f"{describe}: credentials_secret_ref must name the account key",
                reason="BINDING_CREDENTIALS_MISSING",
                metadata=_META,
            )
        try:
            base64.b64decode(secret.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise FailedPrecondition(
                f"{describe}: the credentials secret is not a Cosmos DB account key (base64)",
                reason="BINDING_CREDENTIALS_INVALID",
                metadata=_META,
            ) from None
        try:
            throughput = int(options["throughput"]) if options.get("throughput") else None
            return cls(
                endpoint=binding.endpoint,
                key=SecretStr(secret.strip()),
                database=database,
                container=container,
                platform_database=not binding.database,
                connection_verify=_flag(
                    options.get("connection_verify", "true"), "connection_verify", describe
                ),
                endpoint_discovery=_flag(
                    options.get("endpoint_discovery", "true"), "endpoint_discovery", describe
                ),
                throttle_retries=int(options.get("throttle_retries", 3)),
                throttle_max_wait_seconds=int(options.get("throttle_max_wait_seconds", 5)),
                timeout_seconds=int(options.get("timeout_seconds", 10)),
                throughput=throughput,
            )
        except ValueError:
            raise FailedPrecondition(
                f"{describe}: a numeric option is not a whole number",
                reason="BINDING_INVALID",
                metadata=_META,
            ) from None
