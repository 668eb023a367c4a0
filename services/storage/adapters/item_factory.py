"""What every cloud item-store factory does around its own constructor: resolve the binding's
credentials secret, build the adapter, and provision the tenant's resources only when the
binding asks for it (option auto_provision = "true", for dev setups; otherwise provisioning is
the control plane's job). The adapter connects lazily."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from services.common.bindings.registry import item_spec_hosts
from services.storage.ports import ItemStore

if TYPE_CHECKING:
    from makoto.tenant.v1 import tenant_pb2

    from services.storage.registry import AdapterContext

StoreT = TypeVar("StoreT", bound=ItemStore)


async def build_item_store(
    ctx: AdapterContext,
    binding: tenant_pb2.ItemStoreBinding,
    make: Callable[[str | None], StoreT],
) -> StoreT:
    if binding.endpoint:
        await ctx.check_endpoint(binding.endpoint, item_spec_hosts(binding.backend), "item_store")
    secret = None
    if binding.credentials_secret_ref:
        secret = (await ctx.secret(binding.credentials_secret_ref, "item_store")).get_secret_value()
    store = make(secret)
    if binding.options.get("auto_provision", "").lower() == "true":
        try:
            await store.provision()
        except BaseException:
            await store.close()
            raise
    return store
