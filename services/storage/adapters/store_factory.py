"""What every cloud store factory does around its own constructor: check the endpoint the
client will connect to (egress policy, resolved now: DNS may have changed since TenantService
accepted the binding), resolve the binding's credentials secret, build the adapter, and
provision the tenant's resources only when the binding asks for it (option auto_provision =
"true", for dev setups; otherwise provisioning is the control plane's job). The adapter
connects lazily."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from services.common.bindings.registry import item_spec_hosts, object_spec_hosts

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
    make: Callable[[str | None], Awaitable[StoreT]],
) -> StoreT:
    """make(secret value or None) builds the adapter."""
    secret = None
    if binding.credentials_secret_ref:
        secret = (await ctx.secret(binding.credentials_secret_ref, field)).get_secret_value()
    store = await make(secret)
    if binding.options.get("auto_provision", "").lower() == "true":
        try:
            await store.provision()
        except BaseException:
            await store.close()
            raise
    return store


async def build_item_store(
    ctx: AdapterContext,
    binding: tenant_pb2.ItemStoreBinding,
    make: Callable[[str | None], StoreT],
) -> StoreT:
    """An item store from its binding; its endpoint (when it names one) checked first."""
    if binding.endpoint:
        await ctx.check_endpoint(binding.endpoint, item_spec_hosts(binding.backend), "item_store")

    async def made(secret: str | None) -> StoreT:
        return make(secret)

    return await build_store(ctx, binding, "item_store", made)


async def build_object_store(
    ctx: AdapterContext,
    binding: tenant_pb2.ObjectStoreBinding,
    parse_secret: Callable[[str], dict[str, str]],
    config_from_binding: Callable[[str, tenant_pb2.ObjectStoreBinding, dict[str, str] | None], C],
    endpoint_of: Callable[[C], str | None],
    store: Callable[[C], StoreT],
) -> StoreT:
    """An object store from its binding: the secret parsed into credentials (none without a
    reference: the SDK's default chain), the backend's config, its endpoint checked (it may
    come from the secret, so only now), the store."""

    async def make(secret: str | None) -> StoreT:
        credentials = parse_secret(secret) if secret is not None else None
        config = config_from_binding(ctx.tenant_id, binding, credentials)
        endpoint = endpoint_of(config)
        if endpoint:  # none: the SDK's own cloud endpoint
            await ctx.check_endpoint(endpoint, object_spec_hosts(binding.backend), "object_store")
        return store(config)

    return await build_store(ctx, binding, "object_store", make)


def item_store_factory(
    config: Callable[[str, tenant_pb2.ItemStoreBinding, str | None], C],
    store: Callable[[C], StoreT],
) -> Callable[[AdapterContext, tenant_pb2.ItemStoreBinding], Awaitable[StoreT]]:
    """The registry factory of an item backend whose adapter is `store(config(tenant, binding,
    secret))`: the backend modules name only their config and adapter classes."""

    async def build(ctx: AdapterContext, binding: tenant_pb2.ItemStoreBinding) -> StoreT:
        def make(secret: str | None) -> StoreT:
            return store(config(ctx.tenant_id, binding, secret))

        return await build_item_store(ctx, binding, make)

    return build
