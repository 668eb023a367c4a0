"""Contract-suite factories for the embedded defaults: local filesystem objects, SQLite items."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.storage.adapters.local_fs_objects import LocalFsObjectStore
from services.storage.adapters.sqlite_items import SqliteItemStore
from services.storage.ports import ItemStore, ObjectStore
from tests.contract.backends import ItemStoreFactory, ObjectStoreFactory

_ids = itertools.count()


@pytest.fixture(scope="session")
async def local_object_store_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ObjectStoreFactory]:
    tenants = tmp_path_factory.mktemp("contract-local") / "tenants"

    async def make() -> ObjectStore:
        store = LocalFsObjectStore(tenants, f"tenant-{next(_ids):05d}")
        await store.provision()
        return store

    yield make


@pytest.fixture(scope="session")
async def sqlite_item_store_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[ItemStoreFactory]:
    base: Path = tmp_path_factory.mktemp("contract-sqlite")

    async def make() -> ItemStore:
        store = SqliteItemStore(base / f"tenant-{next(_ids):05d}" / "items.sqlite3")
        await store.provision()
        return store

    yield make
