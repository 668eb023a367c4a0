"""Contract-suite factory: Cosmos DB items on @vercel/cosmosdb-server (a database per store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.storage.adapters.cosmos_items import CosmosItemConfig, CosmosItemStore
from services.storage.ports import ItemStore
from tests.contract.backends import ItemStoreFactory
from tests.contract.item_emulators import COSMOS_EMULATOR_KEY, Emulator, item_cosmos, unique_tenant

__all__ = ["cosmos_binding", "cosmos_item_store_factory", "item_cosmos", "make_cosmos_store"]


def cosmos_binding(endpoint: str, **options: str) -> tenant_pb2.ItemStoreBinding:
    # connection_verify=false: the emulator's certificate is self-signed (emulator only).
    return tenant_pb2.ItemStoreBinding(
        backend=tenant_pb2.ITEM_BACKEND_COSMOS,
        endpoint=endpoint,
        credentials_secret_ref="env://MAKOTO_TEST_COSMOS_KEY",
        options={"connection_verify": "false", **options},
    )


def make_cosmos_store(
    endpoint: str, tenant_id: str | None = None, key: str = COSMOS_EMULATOR_KEY, **options: str
) -> CosmosItemStore:
    config = CosmosItemConfig.from_binding(
        tenant_id or unique_tenant("ct"), cosmos_binding(endpoint, **options), key
    )
    return CosmosItemStore(config)


@pytest.fixture(scope="session")
async def cosmos_item_store_factory(item_cosmos: Emulator) -> AsyncIterator[ItemStoreFactory]:
    made: list[CosmosItemStore] = []

    async def make() -> ItemStore:
        store = make_cosmos_store(item_cosmos.endpoint)
        await store.provision()
        made.append(store)
        return store

    yield make
    limit = asyncio.Semaphore(8)  # a burst of 100 new connections overruns the emulator
    await asyncio.gather(*(_drop(store, limit) for store in made))


async def _drop(store: ItemStore, limit: asyncio.Semaphore) -> None:
    async with limit:
        try:
            await store.deprovision()
        finally:
            await store.close()
