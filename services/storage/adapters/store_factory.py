"""What every cloud store factory does around its own constructor: resolve the binding's
credentials secret, build the adapter, and provision the tenant's resources only when the
binding asks for it (option auto_provision = "true", for dev setups; otherwise provisioning is
the control plane's job). The adapter connects lazily."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    from makoto.tenant.v1 import tenant_pb2

    from services.storage.registry import AdapterContext


class _Store(Protocol):
    async def provision(self) -> None: ...

    async def close(self) -> None: ...


StoreT = TypeVar("StoreT", bound=_Store)
C = TypeVar("C")


async def build_store(
    ctx: AdapterContext,
    binding: tenant_pb2.ObjectStoreBinding | tenant_pb2.ItemStoreBinding,
    field: Literal["object_store", "item_store"],
    make: Callable[[str | None], StoreT],
) -> StoreT:
    """make(secret value or None) builds the adapter."""
    secret = None
    if binding.credentials_secret_ref:
        secret = (await ctx.secret(binding.credentials_secret_ref, field)).get_secret_value()
    store = make(secret)
    if binding.options.get("auto_provision", "").lower() == "true":
        try:
            await store.provision()
        except BaseException:
            await store.close()
            raise
    return store


async def build_object_store(
    ctx: AdapterContext,
    binding: tenant_pb2.ObjectStoreBinding,
    parse_secret: Callable[[str], dict[str, str]],
    config_from_binding: Callable[[str, tenant_pb2.ObjectStoreBinding, dict[str, str] | None], C],
    store: Callable[[C], StoreT],
) -> StoreT:
    """An object store from its binding: the secret parsed into credentials (none without a
    reference: the SDK's default chain), the backend's config, the store."""

    def make(secret: str | None) -> StoreT:
        credentials = parse_secret(secret) if secret is not None else None
        return store(config_from_binding(ctx.tenant_id, binding, credentials))

    return await build_store(ctx, binding, "object_store", make)
