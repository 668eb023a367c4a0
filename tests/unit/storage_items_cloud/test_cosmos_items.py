"""Cosmos DB adapter behaviour beyond the shared contract: database/container lifecycle, the
one-partition transaction rule, byte-wise order, failures. On @vercel/cosmosdb-server; where
the real service answers what the emulator never does (404 for a missing item, 401, 429,
a failed batch), a proxy in front of the emulator answers in the service's wire format."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from azure.cosmos import PartitionKey
from azure.cosmos.aio import CosmosClient

from services.common.errors import (
    Aborted,
    FailedPrecondition,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from services.storage.adapters.cosmos_items import CosmosItemStore
from services.storage.adapters.cosmos_items.store import doc_id, sort_order
from services.storage.ports import ConditionCheckOp, ItemKey, ItemQuery, PutOp
from tests.contract import test_item_store_contract as contract
from tests.contract.backends_cosmos import make_cosmos_store
from tests.contract.item_emulators import COSMOS_EMULATOR_KEY, Emulator, start_cosmos, unique_tenant
from tests.support import free_port
from tests.unit.storage_items_cloud.fault_proxy import FaultProxy, Forward, Reply, cosmos_error

StartProxy = Callable[[str], Awaitable[FaultProxy]]
# Through a plain-HTTP proxy the SDK must not follow the account's advertised (HTTPS) endpoint.
VIA_PROXY = {"endpoint_discovery": "false", "throttle_max_wait_seconds": "5"}


def k(sort_key: str, partition: str = "p") -> ItemKey:
    return ItemKey("things", partition, sort_key)


def raw_client(emulator: Emulator) -> CosmosClient:
    return CosmosClient(emulator.endpoint, credential=COSMOS_EMULATOR_KEY, connection_verify=False)


async def database_ids(emulator: Emulator) -> list[str]:
    async with raw_client(emulator) as client:
        return [d["id"] async for d in client.list_databases()]


@pytest.fixture
async def store(item_cosmos: Emulator) -> Any:
    made = make_cosmos_store(item_cosmos.endpoint)
    await made.provision()
    yield made
    await made.deprovision()
    await made.close()


async def proxied(
    start: StartProxy, emulator: Emulator, *hooks: Any, **options: str
) -> tuple[CosmosItemStore, FaultProxy]:
    proxy = await start(emulator.endpoint)
    store = make_cosmos_store(proxy.endpoint, **{**VIA_PROXY, **options})
    await store.provision()
    proxy.hooks.extend(hooks)
    return store, proxy


def is_doc_request(request: web.Request) -> bool:
    return "/docs" in request.path


async def real_404(request: web.Request, body: bytes, forward: Forward) -> Reply | None:
    """Where the emulator answers 500 for reading a missing item, answer as the service does."""
    if request.method == "GET" and "/docs/" in request.path:
        status, headers, payload = await forward(body)
        if status == 500:
            return cosmos_error(404, "NotFound", "Entity with the specified id does not exist in the system.")
        return status, headers, payload
    return None


# -- lifecycle -------------------------------------------------------------------------------


async def test_database_per_tenant_provision_and_deprovision_are_idempotent(item_cosmos: Emulator) -> None:
    tenant = unique_tenant("acme")
    store = make_cosmos_store(item_cosmos.endpoint, tenant)
    await store.provision()
    await store.provision()
    assert f"makoto-{tenant}" in await database_ids(item_cosmos)
    async with raw_client(item_cosmos) as client:
        container = client.get_database_client(f"makoto-{tenant}").get_container_client("items")
        properties = await container.read()
    assert properties["partitionKey"]["paths"] == ["/pk"]
    await store.put(k("a"), {"v": 1})
    await store.provision()
    assert (await store.get(k("a"))).attributes == {"v": 1}
    await store.deprovision()
    await store.deprovision()
    assert f"makoto-{tenant}" not in await database_ids(item_cosmos)
    await store.close()


async def test_named_database_keeps_the_database_on_deprovision(item_cosmos: Emulator) -> None:
    from makoto.tenant.v1 import tenant_pb2

    from services.storage.adapters.cosmos_items import CosmosItemConfig
    from tests.contract.backends_cosmos import cosmos_binding

    shared = f"shared-{unique_tenant()}"
    binding: tenant_pb2.ItemStoreBinding = cosmos_binding(item_cosmos.endpoint, container="acme-items")
    binding.database = shared
    store = CosmosItemStore(CosmosItemConfig.from_binding("acme", binding, COSMOS_EMULATOR_KEY))
    await store.provision()
    await store.put(k("a"), {})
    await store.deprovision()
    assert shared in await database_ids(item_cosmos)
    async with raw_client(item_cosmos) as client:
        containers = [c["id"] async for c in client.get_database_client(shared).list_containers()]
        assert "acme-items" not in containers
        await client.delete_database(shared)
    await store.close()


async def test_provision_refuses_a_container_with_another_partition_key(item_cosmos: Emulator) -> None:
    tenant = unique_tenant()
    async with raw_client(item_cosmos) as client:
        database = await client.create_database(f"makoto-{tenant}")
        await database.create_container("items", partition_key=PartitionKey(path="/tenant"))
    store = make_cosmos_store(item_cosmos.endpoint, tenant)
    with pytest.raises(FailedPrecondition) as caught:
        await store.provision()
    assert "/tenant" in caught.value.message
    await store.deprovision()
    await store.close()


# -- semantics specific to Cosmos ---------------------------------------------------------------


async def test_transactions_are_limited_to_one_partition(store: CosmosItemStore) -> None:
    assert store.capabilities.cross_partition_transactions is False
    with pytest.raises(FailedPrecondition) as caught:
        await store.transact_write([PutOp(k("a", "p1"), {}), PutOp(k("a", "p2"), {})])
    assert "limited to one partition" in caught.value.message
    assert caught.value.metadata["capability"] == "cross_partition_transactions"
    with pytest.raises(FailedPrecondition):  # another collection is another partition too
        await store.transact_write([PutOp(k("a"), {}), PutOp(ItemKey("other", "p", "a"), {})])
    assert await store.batch_get([k("a", "p1"), k("a", "p2"), k("a")]) == []


async def test_sort_order_field_is_the_utf8_hex(store: CosmosItemStore, item_cosmos: Emulator) -> None:
    await store.put(k("\U0001f600"), {})
    async with raw_client(item_cosmos) as client:
        container = client.get_database_client(store._config.database).get_container_client("items")
        doc = await container.read_item(doc_id("\U0001f600"), partition_key="things#p")
    assert doc["so"] == "f09f9880" == sort_order("\U0001f600")
    assert doc["s"] == "\U0001f600" and doc["pk"] == "things#p"


async def test_queries_always_filter_on_the_partition_in_sql(
    item_cosmos: Emulator, fault_proxy: StartProxy
) -> None:
    store, proxy = await proxied(fault_proxy, item_cosmos)
    await store.put(k("a", "p1"), {})
    await store.put(k("a", "p2"), {})
    page = await store.query(ItemQuery("things", "p1"))
    assert [i.key for i in page.items] == [k("a", "p1")]
    assert await store.batch_get([k("a", "p2")]) != []
    queries = [json.loads(s.body) for s in proxy.seen if s.headers.get("x-ms-documentdb-isquery") == "true"]
    assert len(queries) == 2
    assert [{p["name"]: p["value"] for p in q["parameters"]}["@pk"] for q in queries] == [
        "things#p1",
        "things#p2",
    ]
    assert all("c.pk = @pk" in q["query"] for q in queries)
    await store.deprovision()
    await store.close()


async def test_missing_item_answered_404_is_not_found(item_cosmos: Emulator, fault_proxy: StartProxy) -> None:
    """The real service answers 404 for a missing item (the emulator answers 500)."""

    store, _ = await proxied(fault_proxy, item_cosmos, real_404)
    with pytest.raises(NotFound) as caught:
        await store.get(k("missing"))
    assert caught.value.reason == "ITEM_NOT_FOUND"
    stored = await store.put(k("there"), {"v": 1})
    assert (await store.get(k("there"))).etag == stored.etag
    await store.deprovision()
    await store.close()


async def test_missing_container_is_not_provisioned_not_a_missing_item(
    item_cosmos: Emulator, fault_proxy: StartProxy
) -> None:
    async def owner_missing(request: web.Request, body: bytes, forward: Forward) -> Reply | None:
        if "/docs" in request.path:
            return cosmos_error(
                404, "NotFound", "Owner resource does not exist", **{"x-ms-substatus": "1003"}
            )
        return None

    store, _ = await proxied(fault_proxy, item_cosmos, owner_missing)
    for call in (store.get(k("a")), store.delete(k("a")), store.put(k("a"), {}, expected_etag="e")):
        with pytest.raises(FailedPrecondition) as caught:
            await call
        assert caught.value.reason == "ITEM_STORE_NOT_PROVISIONED"
    await store.deprovision()
    await store.close()


# The contract tests the emulator fails only because it answers 500 for a missing item: with
# the service's 404 put back by the proxy, the same test bodies pass unchanged.
READ_MISSING_CASES: list[tuple[str, Callable[..., Awaitable[None]], dict[str, Any]]] = [
    ("put_get_delete", contract.test_put_get_delete, {}),
    ("etag_conditions", contract.test_etag_conditions, {}),
    ("batch_write", contract.test_batch_write, {}),
    ("refuses_duplicate_keys", contract.test_transaction_refuses_duplicate_keys, {}),
    ("delete_of_missing_is_a_no_op", contract.test_transaction_delete_of_missing_item_is_a_no_op, {}),
    *[
        (f"is_atomic[{failing}]", contract.test_transaction_is_atomic, {"failing": failing})
        for failing in ("exists", "etag", "check_missing", "check_etag", "delete_etag")
    ],
]


@pytest.mark.parametrize(
    ("name", "case", "kwargs"), READ_MISSING_CASES, ids=[c[0] for c in READ_MISSING_CASES]
)
async def test_contract_cases_pass_when_a_missing_item_reads_404(
    item_cosmos: Emulator,
    fault_proxy: StartProxy,
    name: str,
    case: Callable[..., Awaitable[None]],
    kwargs: dict[str, Any],
) -> None:
    store, _ = await proxied(fault_proxy, item_cosmos, real_404)
    try:
        await case(store, **kwargs)
    finally:
        await store.deprovision()
        await store.close()


async def test_failed_batch_names_the_transaction_operation(
    item_cosmos: Emulator, fault_proxy: StartProxy
) -> None:
    """A failed transactional batch (as the service answers it: 207 with per-operation
    statuses) is ABORTED naming the transaction operation, not the batch operation."""
    sent: list[list[dict[str, Any]]] = []

    async def failed_batch(request: web.Request, body: bytes, forward: Forward) -> Reply | None:
        if request.headers.get("x-ms-cosmos-is-batch-request", "").lower() != "true":
            return None
        sent.append(json.loads(body))
        results = [{"statusCode": 201}, {"statusCode": 204}, {"statusCode": 409}]
        return 207, {"Content-Type": "application/json"}, json.dumps(results).encode()

    store, _ = await proxied(fault_proxy, item_cosmos, failed_batch)
    with pytest.raises(Aborted) as caught:
        await store.transact_write([ConditionCheckOp(k("absent"), must_not_exist=True), PutOp(k("new"), {})])
    assert caught.value.metadata == {"operation_index": "1"}
    assert caught.value.reason == "TRANSACTION_CONFLICT"
    # absence is asserted by creating and deleting a placeholder in the same atomic batch
    assert [op["operationType"] for op in sent[0]] == ["Create", "Delete", "Create"]
    await store.deprovision()
    await store.close()


# -- throttling and failures ---------------------------------------------------------------------


def throttle_docs(times: int, retry_after_ms: int) -> Any:
    left = [times]

    async def hook(request: web.Request, body: bytes, forward: Forward) -> Reply | None:
        if is_doc_request(request) and left[0] != 0:
            left[0] -= 1
            return cosmos_error(
                429,
                "TooManyRequests",
                "Request rate is large",
                **{"x-ms-retry-after-ms": str(retry_after_ms)},
            )
        return None

    return hook


async def test_429_is_retried_honouring_retry_after_then_succeeds(
    item_cosmos: Emulator, fault_proxy: StartProxy
) -> None:
    store, proxy = await proxied(fault_proxy, item_cosmos, throttle_docs(2, 50))
    before = len(proxy.seen)
    started = time.monotonic()
    await store.put(k("t"), {"v": 1})
    assert time.monotonic() - started >= 0.1  # waited 2 x 50 ms as told
    assert len([s for s in proxy.seen[before:] if "/docs" in s.path]) == 3
    await store.deprovision()
    await store.close()


async def test_429_that_persists_is_resource_exhausted_with_the_hint(
    item_cosmos: Emulator, fault_proxy: StartProxy
) -> None:
    store, proxy = await proxied(fault_proxy, item_cosmos, throttle_docs(-1, 20), throttle_retries="2")
    before = len(proxy.seen)
    with pytest.raises(ResourceExhausted) as caught:
        await store.put(k("t"), {"v": 1})
    assert caught.value.retry_after_seconds == pytest.approx(0.02)
    assert caught.value.metadata["backend"] == "cosmos"
    assert len([s for s in proxy.seen[before:] if "/docs" in s.path]) == 3  # 1 + 2 retries
    proxy.hooks.clear()
    await store.deprovision()
    await store.close()


async def test_rejected_key_names_the_binding_never_the_key(
    item_cosmos: Emulator, fault_proxy: StartProxy
) -> None:
    async def unauthorized(request: web.Request, body: bytes, forward: Forward) -> Reply | None:
        return cosmos_error(401, "Unauthorized", "The input authorization token can't serve the request.")

    proxy = await fault_proxy(item_cosmos.endpoint)
    proxy.hooks.append(unauthorized)
    wrong_key = "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="
    store = make_cosmos_store(proxy.endpoint, key=wrong_key, **VIA_PROXY)
    with pytest.raises(FailedPrecondition) as caught:
        await store.get(k("a"))
    error = caught.value
    assert error.reason == "BINDING_CREDENTIALS_REJECTED" and "item_store binding" in error.message
    assert wrong_key not in error.message and wrong_key not in str(error.details())
    await store.close()


@pytest.mark.parametrize(
    ("key", "endpoint"), [("not base64 at all!", "https://x"), (COSMOS_EMULATOR_KEY, "")]
)
def test_unusable_binding_is_failed_precondition(key: str, endpoint: str) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        make_cosmos_store(endpoint, key=key)
    assert key not in caught.value.message


async def test_closed_port_is_unavailable() -> None:
    store = make_cosmos_store(f"https://127.0.0.1:{free_port()}", endpoint_discovery="false")
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        await store.get(k("a"))
    assert time.monotonic() - started < 5
    assert caught.value.metadata["backend"] == "cosmos"
    await store.close()


async def test_emulator_stopped_mid_test_is_unavailable() -> None:
    with start_cosmos() as emulator:
        store = make_cosmos_store(emulator.endpoint)
        await store.provision()
        await store.put(k("a"), {"v": 1})
        assert (await store.query(ItemQuery("things", "p"))).items
        emulator.stop()
        with pytest.raises(Unavailable):
            await store.query(ItemQuery("things", "p"))
        with pytest.raises(Unavailable):
            await store.put(k("b"), {})
    await store.close()


async def test_client_runs_at_session_consistency_on_a_pk_container(
    item_cosmos: Emulator, fault_proxy: StartProxy
) -> None:
    """The architecture document's Session consistency, set by the adapter itself (not left to
    the account's default): every request the SDK sends to the account says so. The container
    is partitioned on /pk (hash, version 2): README "Onboarding" says why not /tenantId."""
    proxy = await fault_proxy(item_cosmos.endpoint)
    made = make_cosmos_store(proxy.endpoint, **VIA_PROXY)
    try:
        await made.provision()
        await made.put(k("a"), {"n": 1})
        assert (await made.get(k("a"))).attributes == {"n": 1}
        docs = [s for s in proxy.seen if "/docs" in s.path]
        assert len(docs) >= 2  # the write and the read went through the proxy
        levels = {s.headers.get("x-ms-consistency-level") for s in proxy.seen}
        assert levels == {"Session"}, levels
        async with raw_client(item_cosmos) as client:
            container = client.get_database_client(made._config.database).get_container_client("items")
            key = (await container.read())["partitionKey"]
        assert key["paths"] == ["/pk"] and key["kind"] == "Hash" and key.get("version") == 2
    finally:
        await made.deprovision()
        await made.close()
