"""Registry factory (services/storage/registry.py): a tenant's ItemStoreBinding -> adapter
(secret resolution and optional auto_provision: services/storage/adapters/store_factory.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.storage.adapters.postgres_items.config import PostgresItemConfig
from services.storage.adapters.postgres_items.store import PostgresItemStore
from services.storage.adapters.store_factory import build_item_store

if TYPE_CHECKING:
    from makoto.tenant.v1 import tenant_pb2

    from services.storage.registry import AdapterContext


async def build(ctx: AdapterContext, binding: tenant_pb2.ItemStoreBinding) -> PostgresItemStore:
    return await build_item_store(
        ctx,
        binding,
        lambda secret: PostgresItemStore(PostgresItemConfig.from_binding(ctx.tenant_id, binding, secret)),
    )
