"""What the three cloud item adapters must do alike beyond the contract suite: tenants never
see each other's items, conditions hold under concurrent writers, and the service's registry
builds each adapter from a binding and a secret reference."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from makoto.tenant.v1 import tenant_pb2
from pydantic import SecretStr

from services.common.errors import Aborted, AlreadyExists, NotFound
from services.storage.ports import ItemKey, ItemQuery, PutOp
from services.storage.registry import AdapterContext, default_registry
from tests.contract.backends import ItemStoreFactory
from tests.contract.backends_cosmos import cosmos_binding
from tests.contract.backends_dynamodb import FAKE_CREDENTIALS, dynamodb_binding
from tests.contract.backends_postgres import postgres_binding
from tests.contract.item_emulators import COSMOS_EMULATOR_KEY, Emulator, unique_tenant
from tests.support import make_settings

BACKENDS = ["dynamodb", "cosmos", "postgres"]
K = ItemKey("things", "p", "s")


@pytest.fixture(params=BACKENDS)
def factory(request: pytest.FixtureRequest) -> ItemStoreFactory:
    made: ItemStoreFactory = request.getfixturevalue(f"{request.param}_item_store_factory")
    return made


async def test_tenants_never_see_each_other(factory: ItemStoreFactory) -> None:
    acme, globex = await factory(), await factory()
    try:
        await acme.put(K, {"owner": "acme"})
        await globex.put(K, {"owner": "globex"})
        await acme.put(ItemKey("things", "p", "only-acme"), {})
        assert (await acme.get(K)).attributes == {"owner": "acme"}
        assert (await globex.get(K)).attributes == {"owner": "globex"}
        page = await globex.query(ItemQuery("things", "p"))
        assert [i.key.sort_key for i in page.items] == ["s"]
        assert await globex.batch_get([ItemKey("things", "p", "only-acme")]) == []
        await acme.deprovision()
        assert (await globex.get(K)).attributes == {"owner": "globex"}
    finally:
        await acme.close()
        await globex.close()


async def test_concurrent_creates_have_one_winner(factory: ItemStoreFactory) -> None:
    store = await factory()
    try:
        results = await asyncio.gather(
            *(store.put(K, {"writer": i}, must_not_exist=True) for i in range(8)), return_exceptions=True
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(r, AlreadyExists) for r in results if isinstance(r, BaseException))
        assert (await store.get(K)).etag == winners[0].etag  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_concurrent_conditional_updates_have_one_winner(factory: ItemStoreFactory) -> None:
    store = await factory()
    try:
        first = await store.put(K, {"v": 0})
        results = await asyncio.gather(
            *(store.put(K, {"v": i}, expected_etag=first.etag) for i in range(1, 7)), return_exceptions=True
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(r, Aborted) for r in results if isinstance(r, BaseException))
        got = await store.get(K)
        assert got.etag == winners[0].etag and got.created == first.created  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_concurrent_overwrites_keep_created(factory: ItemStoreFactory) -> None:
    store = await factory()
    try:
        first = await store.put(K, {"v": 0})
        written = await asyncio.gather(*(store.put(K, {"v": i}) for i in range(1, 7)))
        assert all(w.created == first.created for w in written)
        got = await store.get(K)
        assert got.etag in {w.etag for w in written} and got.created == first.created
        await store.delete(K)
        with pytest.raises(NotFound):
            await store.delete(K)
    finally:
        await store.close()


async def test_a_cancelled_call_leaves_the_store_usable(factory: ItemStoreFactory) -> None:
    """The service cancels the backend call when the deadline passes; nothing may hang or leak."""
    store = await factory()
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.002):
                await store.batch_write(
                    [PutOp(ItemKey("things", "p", f"c{i:03d}"), {"i": i}) for i in range(500)]
                )
        stored = await store.put(K, {"after": "cancel"})
        assert (await store.get(K)).etag == stored.etag
    finally:
        await store.close()


class Secrets:
    """A secret source holding exactly one value."""

    def __init__(self, ref: str, value: str) -> None:
        self.ref, self.value, self.asked = ref, value, 0

    async def get(self, ref: str) -> SecretStr:
        assert ref == self.ref
        self.asked += 1
        return SecretStr(self.value)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_registry_builds_the_adapter_from_the_binding(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    binding: tenant_pb2.ItemStoreBinding
    secret: str
    if backend == "dynamodb":
        moto: Emulator = request.getfixturevalue("item_moto")
        binding, secret = dynamodb_binding(moto.endpoint, auto_provision="true"), FAKE_CREDENTIALS
    elif backend == "cosmos":
        cosmos: Emulator = request.getfixturevalue("item_cosmos")
        binding, secret = cosmos_binding(cosmos.endpoint, auto_provision="true"), COSMOS_EMULATOR_KEY
    else:
        dsn: str = request.getfixturevalue("item_postgres_dsn")
        binding, secret = postgres_binding(dsn, auto_provision="true"), ""
        binding.credentials_secret_ref = "env://MAKOTO_TEST_PG_PASSWORD"
    secrets = Secrets(binding.credentials_secret_ref, secret)
    ctx = AdapterContext(tenant_id=unique_tenant("reg"), settings=make_settings(tmp_path), secrets=secrets)
    store: Any = await default_registry().build_items(ctx, binding)
    try:
        assert secrets.asked == 1
        assert type(store).__name__.lower().startswith(backend[:5])
        stored = await store.put(K, {"via": "registry"})
        assert (await store.get(K)).etag == stored.etag
        assert isinstance(store.capabilities.max_transaction_ops, int)
    finally:
        await store.deprovision()
        await store.close()
