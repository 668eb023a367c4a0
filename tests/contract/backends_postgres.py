"""Contract-suite factory: PostgreSQL items on the local server (a schema per store, in a
database made for the session)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.storage.adapters.postgres_items import PostgresItemConfig, PostgresItemStore
from services.storage.ports import ItemStore
from tests.contract.backends import ItemStoreFactory
from tests.contract.item_emulators import item_postgres_dsn, unique_tenant

__all__ = ["item_postgres_dsn", "make_postgres_store", "postgres_binding", "postgres_item_store_factory"]


def postgres_binding(dsn: str, **options: str) -> tenant_pb2.ItemStoreBinding:
    return tenant_pb2.ItemStoreBinding(
        backend=tenant_pb2.ITEM_BACKEND_POSTGRES, endpoint=dsn, options=options
    )


def make_postgres_store(
    dsn: str, tenant_id: str | None = None, password: str | None = None, **options: str
) -> PostgresItemStore:
    config = PostgresItemConfig.from_binding(
        tenant_id or unique_tenant("ct"), postgres_binding(dsn, **options), password
    )
    return PostgresItemStore(config)


@pytest.fixture(scope="session")
async def postgres_item_store_factory(item_postgres_dsn: str) -> AsyncIterator[ItemStoreFactory]:
    made: list[PostgresItemStore] = []

    async def make() -> ItemStore:
        store = make_postgres_store(item_postgres_dsn)
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
