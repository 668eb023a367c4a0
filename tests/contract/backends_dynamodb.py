"""Contract-suite factory: DynamoDB items on moto server (a table per store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.storage.adapters.dynamodb_items import DynamoDbItemConfig, DynamoDbItemStore
from services.storage.ports import ItemStore
from tests.contract.backends import ItemStoreFactory
from tests.contract.item_emulators import Emulator, item_moto, unique_tenant

__all__ = ["dynamodb_binding", "dynamodb_item_store_factory", "item_moto", "make_dynamodb_store"]

# moto checks no credentials; these only have the shape the adapter expects.
FAKE_CREDENTIALS = "testing-key-id:testing-secret"


def dynamodb_binding(endpoint: str, **options: str) -> tenant_pb2.ItemStoreBinding:
    return tenant_pb2.ItemStoreBinding(
        backend=tenant_pb2.ITEM_BACKEND_DYNAMODB,
        endpoint=endpoint,
        region="us-east-1",
        credentials_secret_ref="env://MAKOTO_TEST_AWS",
        options=options,
    )


def make_dynamodb_store(
    endpoint: str, tenant_id: str | None = None, secret: str = FAKE_CREDENTIALS, **options: str
) -> DynamoDbItemStore:
    config = DynamoDbItemConfig.from_binding(
        tenant_id or unique_tenant("ct"), dynamodb_binding(endpoint, **options), secret
    )
    return DynamoDbItemStore(config)


@pytest.fixture(scope="session")
async def dynamodb_item_store_factory(item_moto: Emulator) -> AsyncIterator[ItemStoreFactory]:
    made: list[DynamoDbItemStore] = []

    async def make() -> ItemStore:
        store = make_dynamodb_store(item_moto.endpoint)
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
