"""Contract-suite wiring: each backend in backends.py becomes a parameter of the `object_store`
/ `item_store` fixtures; known emulator gaps become strict xfails (see backends.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.storage.ports import ItemStore, ObjectStore
from tests.contract.backends import (
    ITEM_BACKENDS,
    OBJECT_BACKENDS,
    OBJECT_FAULT_BACKENDS,
    Backend,
    FaultRig,
    ItemStoreFactory,
    ObjectStoreFactory,
    gap,
)

_BROKEN: dict[str, BaseException] = {}


def pytest_configure(config: pytest.Config) -> None:
    # Each backend module is a plugin, so its fixtures (and the emulators they start) are visible.
    # A module that fails to import fails its own backend's tests, not everyone's collection.
    for module in sorted({b.module for b in (*OBJECT_BACKENDS, *ITEM_BACKENDS, *OBJECT_FAULT_BACKENDS)}):
        try:
            config.pluginmanager.import_plugin(module)
        except Exception as exc:
            _BROKEN[module] = exc


def _factory(request: pytest.FixtureRequest) -> object:
    backend: Backend = request.param
    if backend.module in _BROKEN:
        raise RuntimeError(f"backend module {backend.module} failed to import") from _BROKEN[backend.module]
    reason = gap(backend.name, request.node.originalname)
    if reason is not None:
        request.node.add_marker(pytest.mark.emulator_gap(reason))
        request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
    return request.getfixturevalue(backend.fixture)


@pytest.fixture(params=OBJECT_BACKENDS, ids=lambda b: b.name)
def object_store_factory(request: pytest.FixtureRequest) -> ObjectStoreFactory:
    return _factory(request)  # type: ignore[return-value]


@pytest.fixture(params=OBJECT_FAULT_BACKENDS, ids=lambda b: b.name)
def fault_rig(request: pytest.FixtureRequest) -> FaultRig:
    return _factory(request)  # type: ignore[return-value]


@pytest.fixture(params=ITEM_BACKENDS, ids=lambda b: b.name)
def item_store_factory(request: pytest.FixtureRequest) -> ItemStoreFactory:
    return _factory(request)  # type: ignore[return-value]


@pytest.fixture
async def object_store(object_store_factory: ObjectStoreFactory) -> AsyncIterator[ObjectStore]:
    store = await object_store_factory()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def item_store(item_store_factory: ItemStoreFactory) -> AsyncIterator[ItemStore]:
    store = await item_store_factory()
    try:
        yield store
    finally:
        await store.close()
