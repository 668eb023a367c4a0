"""Registry factory (services/storage/registry.py): a tenant's ItemStoreBinding -> adapter.

The adapter connects lazily; it does not create the tenant's resources (provision() is the
control plane's job) unless the binding's option auto_provision is "true" (dev setups).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.storage.adapters.cosmos_items.config import CosmosItemConfig
from services.storage.adapters.cosmos_items.store import CosmosItemStore

if TYPE_CHECKING:
    from makoto.tenant.v1 import tenant_pb2

    from services.storage.registry import AdapterContext


async def build(ctx: AdapterContext, binding: tenant_pb2.ItemStoreBinding) -> CosmosItemStore:
    secret = None
    if binding.credentials_secret_ref:
        secret = (await ctx.secret(binding.credentials_secret_ref, "item_store")).get_secret_value()
    store = CosmosItemStore(CosmosItemConfig.from_binding(ctx.tenant_id, binding, secret))
    if binding.options.get("auto_provision", "").lower() == "true":
        try:
            await store.provision()
        except BaseException:
            await store.close()
            raise
    return store
