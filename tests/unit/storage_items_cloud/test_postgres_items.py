"""PostgreSQL adapter behaviour beyond the shared contract: schema per tenant, bytea keys,
serializable transactions, the pool's lifecycle, failures. On the local PostgreSQL, in the
session's own database."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from services.common.errors import Aborted, FailedPrecondition, InvalidArgument, Unavailable
from services.storage.adapters.postgres_items import PostgresItemConfig, PostgresItemStore, schema_for
from services.storage.ports import ConditionCheckOp, ItemKey, ItemQuery, PutOp, SortKeyCondition
from tests.contract.backends_postgres import make_postgres_store, postgres_binding
from tests.contract.item_emulators import unique_tenant
from tests.support import free_port


def k(sort_key: str, partition: str = "p") -> ItemKey:
    return ItemKey("things", partition, sort_key)


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@pytest.fixture
async def store(item_postgres_dsn: str) -> Any:
    made = make_postgres_store(item_postgres_dsn)
    await made.provision()
    yield made
    await made.deprovision()
    await made.close()


async def test_schema_per_tenant_lifecycle_is_idempotent(item_postgres_dsn: str) -> None:
    tenant = unique_tenant("acme")
    schema = "makoto_" + tenant.replace("-", "_")
    store = make_postgres_store(item_postgres_dsn, tenant)
    await store.provision()
    await store.provision()
    rows = await fetch(
        item_postgres_dsn, "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
    )
    assert [r["table_name"] for r in rows] == ["items"]
    await store.put(k("a"), {"v": 1})
    await store.provision()
    assert (await store.get(k("a"))).attributes == {"v": 1}
    await store.deprovision()
    await store.deprovision()
    rows = await fetch(
        item_postgres_dsn, "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", schema
    )
    assert rows == []
    with pytest.raises(FailedPrecondition) as caught:
        await store.get(k("a"))
    assert caught.value.reason == "ITEM_STORE_NOT_PROVISIONED"
    await store.close()


async def test_long_tenant_ids_get_distinct_schemas(item_postgres_dsn: str) -> None:
    base = "t" + "x" * 55
    first, second = f"{base}-aaaaaa", f"{base}-bbbbbb"
    assert schema_for(first) != schema_for(second)
    assert len(schema_for(first)) <= 63 and len(schema_for(second)) <= 63
    stores = [make_postgres_store(item_postgres_dsn, tenant) for tenant in (first, second)]
    for i, s in enumerate(stores):
        await s.provision()
        await s.put(k("same"), {"owner": i})
    assert [(await s.get(k("same"))).attributes for s in stores] == [{"owner": 0}, {"owner": 1}]
    for s in stores:
        await s.deprovision()
        await s.close()


async def test_binding_may_name_the_schema(item_postgres_dsn: str) -> None:
    schema = f"custom_{uuid.uuid4().hex[:8]}"
    binding = postgres_binding(item_postgres_dsn)
    binding.database = schema
    store = PostgresItemStore(PostgresItemConfig.from_binding("acme", binding, None))
    await store.provision()
    await store.put(k("a"), {})
    await store.deprovision()  # a schema the binding names is not the platform's to drop
    rows = await fetch(
        item_postgres_dsn, "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", schema
    )
    assert len(rows) == 1
    await fetch(item_postgres_dsn, f'DROP SCHEMA "{schema}"')
    await store.close()


async def test_nul_in_keys_and_byte_order(store: PostgresItemStore) -> None:
    # text cannot hold NUL; bytea keys can, and compare byte-wise
    for sk in ("a\x01", "a", "a\x00", "a\x00\x00"):
        await store.put(k(sk, partition="p\x00q"), {"sk": sk})
    page = await store.query(ItemQuery("things", "p\x00q", SortKeyCondition("prefix", "a\x00")))
    assert [i.key.sort_key for i in page.items] == ["a\x00", "a\x00\x00"]
    page = await store.query(ItemQuery("things", "p\x00q"))
    assert [i.key.sort_key for i in page.items] == ["a", "a\x00", "a\x00\x00", "a\x01"]
    assert (await store.get(k("a\x00", partition="p\x00q"))).key.partition_key == "p\x00q"


async def test_serializable_transactions_prevent_write_skew(item_postgres_dsn: str) -> None:
    """T1: 'x absent' then write y; T2: 'y absent' then write x. Run side by side, a store
    with conditions checked inside real transactions lets exactly one of them commit."""
    tenant = unique_tenant()
    one, two = make_postgres_store(item_postgres_dsn, tenant), make_postgres_store(item_postgres_dsn, tenant)
    await one.provision()
    for round_ in range(6):
        x, y = k(f"x{round_}"), k(f"y{round_}")
        results = await asyncio.gather(
            one.transact_write([ConditionCheckOp(x, must_not_exist=True), PutOp(y, {"by": 1})]),
            two.transact_write([ConditionCheckOp(y, must_not_exist=True), PutOp(x, {"by": 2})]),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1 and isinstance(failures[0], Aborted), results
        assert len(await one.batch_get([x, y])) == 1
    await one.deprovision()
    await one.close()
    await two.close()


async def test_close_closes_the_pool(item_postgres_dsn: str) -> None:
    tenant = unique_tenant()
    store = make_postgres_store(item_postgres_dsn, tenant, pool_max_size="3")
    await store.provision()
    await asyncio.gather(*(store.put(k(f"c{i}"), {}) for i in range(6)))
    name = f"makoto-items {schema_for(tenant)}"
    sql = "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1"
    assert 1 <= (await fetch(item_postgres_dsn, sql, name))[0]["n"] <= 3
    await store.close()
    for _ in range(50):
        if (await fetch(item_postgres_dsn, sql, name))[0]["n"] == 0:
            break
        await asyncio.sleep(0.02)
    assert (await fetch(item_postgres_dsn, sql, name))[0]["n"] == 0
    await store.deprovision()  # a closed store reconnects when used again
    await store.close()


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://postgres:hunter2@127.0.0.1/db",
        "postgresql://postgres@127.0.0.1/db?password=hunter2",
        "mysql://x@y/z",
    ],
)
def test_dsn_must_not_carry_a_password(dsn: str) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        make_postgres_store(dsn)
    assert "hunter2" not in caught.value.message


async def test_rejected_credentials_name_the_binding_never_the_password(item_postgres_dsn: str) -> None:
    password = "s3cr3t-" + uuid.uuid4().hex
    role = f"makoto_nologin_{uuid.uuid4().hex[:8]}"
    await fetch(item_postgres_dsn, f"CREATE ROLE {role} NOLOGIN")
    try:
        base = item_postgres_dsn.replace("postgres@", "{user}@", 1)
        for user in (role, f"no_such_role_{uuid.uuid4().hex[:8]}"):
            store = make_postgres_store(base.format(user=user), password=password)
            with pytest.raises(FailedPrecondition) as caught:
                await store.get(k("a"))
            await store.close()
            error = caught.value
            assert error.reason == "BINDING_CREDENTIALS_REJECTED" and "item_store binding" in error.message
            assert password not in error.message and password not in str(error.details())
    finally:
        await fetch(item_postgres_dsn, f"DROP ROLE {role}")


async def test_closed_port_is_unavailable() -> None:
    store = make_postgres_store(
        f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout_seconds="2"
    )
    with pytest.raises(Unavailable) as caught:
        await store.get(k("a"))
    assert caught.value.metadata["backend"] == "postgres"
    await store.close()


async def test_connection_killed_by_the_server_is_unavailable_then_recovers(
    store: PostgresItemStore, item_postgres_dsn: str
) -> None:
    await store.put(k("a"), {})
    name = f"makoto-items {store._config.schema}"
    await fetch(
        item_postgres_dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        name,
    )
    outcomes = []
    for _ in range(5):
        try:
            await store.get(k("a"))
            outcomes.append("ok")
            break
        except Unavailable:
            outcomes.append("unavailable")
    assert outcomes[-1] == "ok"  # the pool replaces the dead connection


def test_bad_numeric_option_is_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition):
        make_postgres_store("postgresql://postgres@127.0.0.1/x", pool_max_size="many")


async def test_value_postgres_cannot_hold_is_invalid_argument(store: PostgresItemStore) -> None:
    with pytest.raises(InvalidArgument):
        await store.put(k("a"), {"v": "\ud800"})
