"""DynamoDB adapter behaviour beyond the shared contract: table lifecycle, service limits,
chunking and unprocessed-item retries, throttling, cancellation reasons, failures. On moto
server; where DynamoDB answers something moto never does, a proxy in front of moto answers
it in DynamoDB's own wire format."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import aioboto3
import pytest
from aiohttp import web

from services.common.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from services.storage.adapters.dynamodb_items import DynamoDbItemStore
from services.storage.ports import (
    ConditionCheckOp,
    DeleteOp,
    ItemKey,
    ItemQuery,
    PutOp,
)
from tests.contract.backends_dynamodb import FAKE_CREDENTIALS, make_dynamodb_store
from tests.contract.item_emulators import Emulator, start_moto, unique_tenant
from tests.support import free_port
from tests.unit.storage_items_cloud.fault_proxy import (
    FaultProxy,
    Forward,
    Reply,
    dynamodb_error,
    dynamodb_operation,
    dynamodb_reply,
)

StartProxy = Callable[[str], Awaitable[FaultProxy]]
FAST_RETRIES = {"max_attempts": "3", "retry_base_seconds": "0.001", "retry_cap_seconds": "0.01"}


def k(sort_key: str, partition: str = "p") -> ItemKey:
    return ItemKey("things", partition, sort_key)


async def table_names(endpoint: str) -> list[str]:
    session = aioboto3.Session()
    async with session.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    ) as client:
        response = await client.list_tables()
        return list(response["TableNames"])


@pytest.fixture
async def store(item_moto: Emulator) -> Any:
    made = make_dynamodb_store(item_moto.endpoint)
    await made.provision()
    yield made
    await made.deprovision()
    await made.close()


async def proxied(
    start: StartProxy, moto: Emulator, *hooks: Any, **options: str
) -> tuple[DynamoDbItemStore, FaultProxy]:
    proxy = await start(moto.endpoint)
    proxy.hooks.extend(hooks)
    store = make_dynamodb_store(proxy.endpoint, **{**FAST_RETRIES, **options})
    await store.provision()
    return store, proxy


def ops_seen(proxy: FaultProxy, operation: str) -> list[dict[str, Any]]:
    target = f"DynamoDB_20120810.{operation}"
    return [json.loads(s.body) for s in proxy.seen if s.headers.get("X-Amz-Target") == target]


# -- lifecycle -------------------------------------------------------------------------------


async def test_table_per_tenant_provision_and_deprovision_are_idempotent(item_moto: Emulator) -> None:
    tenant = unique_tenant("acme")
    store = make_dynamodb_store(item_moto.endpoint, tenant)
    await store.provision()
    await store.provision()
    assert f"makoto-{tenant}-items" in await table_names(item_moto.endpoint)
    await store.put(k("a"), {"v": 1})
    await store.provision()  # provisioning again keeps the data
    assert (await store.get(k("a"))).attributes == {"v": 1}
    await store.deprovision()
    await store.deprovision()
    assert f"makoto-{tenant}-items" not in await table_names(item_moto.endpoint)
    with pytest.raises(FailedPrecondition) as caught:
        await store.get(k("a"))
    assert caught.value.reason == "ITEM_STORE_NOT_PROVISIONED"
    assert f"makoto-{tenant}-items" in caught.value.message
    await store.close()


async def test_binding_may_name_the_table(item_moto: Emulator) -> None:
    from services.storage.adapters.dynamodb_items import DynamoDbItemConfig
    from tests.contract.backends_dynamodb import dynamodb_binding

    binding = dynamodb_binding(item_moto.endpoint)
    binding.database = f"shared-{unique_tenant()}"
    store = DynamoDbItemStore(DynamoDbItemConfig.from_binding("acme", binding, FAKE_CREDENTIALS))
    await store.provision()
    assert binding.database in await table_names(item_moto.endpoint)
    await store.deprovision()
    await store.close()


async def test_provision_refuses_a_table_with_another_key_schema(item_moto: Emulator) -> None:
    tenant = unique_tenant()
    session = aioboto3.Session()
    async with session.client(
        "dynamodb",
        endpoint_url=item_moto.endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    ) as client:
        await client.create_table(
            TableName=f"makoto-{tenant}-items",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        )
    store = make_dynamodb_store(item_moto.endpoint, tenant)
    with pytest.raises(FailedPrecondition) as caught:
        await store.provision()
    assert caught.value.metadata["binding"] == "item_store"
    await store.deprovision()
    await store.close()


# -- limits ---------------------------------------------------------------------------------


async def test_item_over_400_kb_is_refused_before_sending(
    item_moto: Emulator, fault_proxy: StartProxy
) -> None:
    store, proxy = await proxied(fault_proxy, item_moto)
    huge = {"text": "ü" * 205_000}  # 410,000 bytes of UTF-8
    before = len(proxy.seen)
    with pytest.raises(InvalidArgument) as caught:
        await store.put(k("big"), huge)
    assert caught.value.reason == "ITEM_TOO_LARGE" and "400 KB" in caught.value.message
    with pytest.raises(InvalidArgument):
        await store.transact_write([PutOp(k("small"), {}), PutOp(k("big"), huge)])
    with pytest.raises(InvalidArgument) as in_batch:
        await store.batch_write([PutOp(k("small"), {}), PutOp(k("big"), huge)])
    assert in_batch.value.field_violations[0][0] == "writes[1].put"
    assert len(proxy.seen) == before  # nothing reached DynamoDB
    # just under the limit is fine
    fits = {"text": "x" * 400_000}
    assert (await store.put(k("fits"), fits)).attributes == fits
    await store.deprovision()
    await store.close()


async def test_transaction_holds_up_to_100_operations(store: DynamoDbItemStore) -> None:
    written = await store.transact_write([PutOp(k(f"t{i:03d}"), {"i": i}) for i in range(100)])
    assert len(written) == 100
    with pytest.raises(InvalidArgument):
        await store.transact_write([PutOp(k(f"u{i:03d}"), {}) for i in range(101)])
    with pytest.raises(InvalidArgument):
        await store.transact_write([])


async def test_transaction_keeps_created_of_overwritten_items(store: DynamoDbItemStore) -> None:
    first = await store.put(k("x"), {"v": 1})
    (again,) = await store.transact_write([PutOp(k("x"), {"v": 2}, expected_etag=first.etag)])
    assert again.created == first.created and again.etag != first.etag
    assert (await store.get(k("x"))).etag == again.etag


# -- batches: chunking and unprocessed items ---------------------------------------------------


def process_only(first: int, operations: tuple[str, ...] = ("BatchWriteItem", "BatchGetItem")) -> Any:
    """DynamoDB may process part of a batch and hand back the rest: let moto see only the
    first `first` requests of each batch call and return the others as unprocessed."""

    async def hook(request: web.Request, body: bytes, forward: Forward) -> Reply | None:
        operation = dynamodb_operation(request)
        if operation not in operations:
            return None
        data = json.loads(body)
        ((table, wanted),) = data["RequestItems"].items()
        if operation == "BatchWriteItem":
            done, rest = wanted[:first], wanted[first:]
            status, _, payload = await forward(json.dumps({"RequestItems": {table: done}}).encode())
            answer = json.loads(payload)
            answer["UnprocessedItems"] = {table: rest} if rest else {}
        else:
            keys = wanted["Keys"]
            done_keys, rest_keys = keys[:first], keys[first:]
            request_items = {table: {**wanted, "Keys": done_keys}}
            status, _, payload = await forward(json.dumps({"RequestItems": request_items}).encode())
            answer = json.loads(payload)
            answer["UnprocessedKeys"] = {table: {**wanted, "Keys": rest_keys}} if rest_keys else {}
        assert status == 200, payload
        return dynamodb_reply(answer)

    return hook


async def test_batch_write_chunks_to_25_and_retries_unprocessed_items(
    item_moto: Emulator, fault_proxy: StartProxy
) -> None:
    store, proxy = await proxied(fault_proxy, item_moto, process_only(7), max_attempts="10")
    ops: list[PutOp | DeleteOp] = [PutOp(k(f"w{i:03d}"), {"i": i}) for i in range(60)]
    # the same key again, in order: put, delete, put -> the last put wins
    ops += [PutOp(k("same"), {"v": 1}), DeleteOp(k("same")), PutOp(k("same"), {"v": 3})]
    ops += [DeleteOp(k("w000")), DeleteOp(k("never-there"))]
    stored = await store.batch_write(ops)
    assert [i.key for i in stored] == [op.key for op in ops if isinstance(op, PutOp)]
    calls = ops_seen(proxy, "BatchWriteItem")
    assert all(len(c["RequestItems"][store._table]) <= 25 for c in calls)
    assert len(calls) > len(ops) // 25  # unprocessed items were sent again
    page = await store.query(ItemQuery("things", "p", page_size=1000))
    assert [i.key.sort_key for i in page.items] == ["same"] + [f"w{i:03d}" for i in range(1, 60)]
    assert (await store.get(k("same"))).attributes == {"v": 3}
    await store.deprovision()
    await store.close()


async def test_batch_get_chunks_to_100_and_retries_unprocessed_keys(
    item_moto: Emulator, fault_proxy: StartProxy
) -> None:
    store, proxy = await proxied(fault_proxy, item_moto, process_only(40), max_attempts="10")
    await store.batch_write([PutOp(k(f"g{i:03d}"), {"i": i}) for i in range(0, 230, 2)])
    wanted = [k(f"g{i:03d}") for i in reversed(range(230))] + [k("g004")]
    found = await store.batch_get(wanted)
    assert [i.key for i in found] == [key for key in wanted if int(key.sort_key[1:]) % 2 == 0]
    calls = ops_seen(proxy, "BatchGetItem")
    assert all(len(c["RequestItems"][store._table]["Keys"]) <= 100 for c in calls)
    assert all(c["RequestItems"][store._table]["ConsistentRead"] for c in calls)
    assert len(calls) >= 6
    await store.deprovision()
    await store.close()


async def test_batch_never_processed_is_resource_exhausted(
    item_moto: Emulator, fault_proxy: StartProxy
) -> None:
    store, proxy = await proxied(fault_proxy, item_moto, process_only(0, ("BatchWriteItem",)))
    with pytest.raises(ResourceExhausted) as caught:
        await store.batch_write([PutOp(k("a"), {})])
    assert caught.value.retry_after_seconds is not None
    assert len(ops_seen(proxy, "BatchWriteItem")) == 3  # max_attempts
    proxy.hooks[:] = [process_only(0, ("BatchGetItem",))]
    with pytest.raises(ResourceExhausted):
        await store.batch_get([k("a")])
    assert len(ops_seen(proxy, "BatchGetItem")) == 1 + 3
    await store.deprovision()
    await store.close()


# -- throttling ----------------------------------------------------------------------------------


def throttle(operation: str, times: int, code: str = "ProvisionedThroughputExceededException") -> Any:
    left = [times]

    async def hook(request: web.Request, body: bytes, forward: Forward) -> Reply | None:
        if dynamodb_operation(request) == operation and left[0] != 0:
            left[0] -= 1
            return dynamodb_error(code, "The level of configured provisioned throughput was exceeded")
        return None

    return hook


async def test_throttled_call_is_retried_then_succeeds(item_moto: Emulator, fault_proxy: StartProxy) -> None:
    store, proxy = await proxied(fault_proxy, item_moto, throttle("UpdateItem", 2))
    stored = await store.put(k("t"), {"v": 1})
    assert (await store.get(k("t"))).etag == stored.etag
    assert len(ops_seen(proxy, "UpdateItem")) == 3
    await store.deprovision()
    await store.close()


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
async def test_throttling_that_persists_is_resource_exhausted(
    item_moto: Emulator, fault_proxy: StartProxy, code: str
) -> None:
    store, proxy = await proxied(fault_proxy, item_moto, throttle("GetItem", -1, code))
    with pytest.raises(ResourceExhausted) as caught:
        await store.get(k("t"))
    assert caught.value.retry_after_seconds == pytest.approx(0.01)
    assert caught.value.metadata["backend"] == "dynamodb"
    assert len(ops_seen(proxy, "GetItem")) == 3
    await store.deprovision()
    await store.close()


def cancel_transaction(*reasons: str) -> Any:
    async def hook(request: web.Request, body: bytes, forward: Forward) -> Reply | None:
        if dynamodb_operation(request) != "TransactWriteItems":
            return None
        status, headers, payload = dynamodb_error("TransactionCanceledException", "Transaction cancelled")
        data = json.loads(payload)
        data["CancellationReasons"] = [{"Code": r} for r in reasons]
        return status, headers, json.dumps(data).encode()

    return hook


async def test_transaction_conflict_names_the_operation(item_moto: Emulator, fault_proxy: StartProxy) -> None:
    store, _ = await proxied(
        fault_proxy, item_moto, cancel_transaction("None", "None", "TransactionConflict")
    )
    with pytest.raises(Aborted) as caught:
        await store.transact_write([PutOp(k("a"), {}), DeleteOp(k("b")), ConditionCheckOp(k("c"))])
    assert caught.value.metadata == {"operation_index": "2"}
    assert caught.value.reason == "TRANSACTION_CONFLICT"
    await store.deprovision()
    await store.close()


async def test_throttled_transaction_is_retried_then_exhausted(
    item_moto: Emulator, fault_proxy: StartProxy
) -> None:
    store, proxy = await proxied(fault_proxy, item_moto, cancel_transaction("None", "ThrottlingError"))
    with pytest.raises(ResourceExhausted):
        await store.transact_write([PutOp(k("a"), {}), PutOp(k("b"), {})])
    assert len(ops_seen(proxy, "TransactWriteItems")) == 3
    await store.deprovision()
    await store.close()


async def test_cancellation_reasons_from_dynamodb_itself(store: DynamoDbItemStore) -> None:
    existing = await store.put(k("e"), {"v": 1})
    await store.put(k("f"), {"v": 1})
    with pytest.raises(Aborted) as caught:
        await store.transact_write(
            [
                PutOp(k("n"), {}),
                ConditionCheckOp(k("e"), expected_etag=existing.etag),
                PutOp(k("f"), {}, must_not_exist=True),
            ]
        )
    assert caught.value.metadata == {"operation_index": "2"}
    with pytest.raises(NotFound):
        await store.get(k("n"))


# -- failures --------------------------------------------------------------------------------------


async def test_closed_port_is_unavailable() -> None:
    store = make_dynamodb_store(f"http://127.0.0.1:{free_port()}", **FAST_RETRIES)
    with pytest.raises(Unavailable) as caught:
        await store.get(k("a"))
    assert caught.value.metadata["backend"] == "dynamodb"
    await store.close()


async def test_backend_stopped_mid_test_is_unavailable() -> None:
    with start_moto() as moto:
        store = make_dynamodb_store(moto.endpoint)
        await store.provision()
        await store.put(k("a"), {"v": 1})
        moto.stop()
        with pytest.raises(Unavailable):
            await store.get(k("a"))
        with pytest.raises(Unavailable):
            await store.put(k("b"), {})
    await store.close()


async def test_rejected_credentials_name_the_binding_never_the_secret() -> None:
    secret = "AKIAEXAMPLEKEYID123:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    with start_moto(check_credentials=True) as moto:
        store = make_dynamodb_store(moto.endpoint, secret=secret)
        with pytest.raises(FailedPrecondition) as caught:
            await store.provision()
        await store.close()
    error = caught.value
    assert error.reason == "BINDING_CREDENTIALS_REJECTED"
    assert "item_store binding" in error.message and "dynamodb table" in error.message
    for part in secret.split(":"):
        assert part not in error.message and part not in str(error.details())


async def test_aws_style_credential_errors_are_failed_precondition(
    item_moto: Emulator, fault_proxy: StartProxy
) -> None:
    async def refuse(request: web.Request, body: bytes, forward: Forward) -> Reply | None:
        return dynamodb_error(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )

    proxy = await fault_proxy(item_moto.endpoint)
    proxy.hooks.append(refuse)
    store = make_dynamodb_store(proxy.endpoint)
    with pytest.raises(FailedPrecondition) as caught:
        await store.get(k("a"))
    assert "UnrecognizedClientException" in caught.value.message
    await store.close()


@pytest.mark.parametrize("secret", ["no-separator-here", '{"access_key_id": "only-the-id"}'])
def test_malformed_secret_is_failed_precondition_without_its_content(secret: str) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        make_dynamodb_store("http://127.0.0.1:1", secret=secret)
    assert secret not in caught.value.message and "only-the-id" not in caught.value.message
