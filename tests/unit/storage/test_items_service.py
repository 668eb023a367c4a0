"""Item RPCs through a real gRPC server: typed attributes, conditions, queries, batches,
transactions, size limits, and the error codes that go with them."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2
from makoto.storage.v1 import items_pb2

from tests.unit.storage.conftest import Storage, bad_request, error_info

AV = items_pb2.AttributeValue


def item(sk: str, pk: str = "p", collection: str = "orders", **attrs: AV) -> items_pb2.Item:
    return items_pb2.Item(collection=collection, partition_key=pk, sort_key=sk, attributes=attrs)


def ikey(sk: str, pk: str = "p", collection: str = "orders") -> items_pb2.ItemKey:
    return items_pb2.ItemKey(collection=collection, partition_key=pk, sort_key=sk)


async def put(s: Storage, it: items_pb2.Item, **kw: object) -> items_pb2.Item:
    return await s.stub.PutItem(items_pb2.PutItemRequest(tenant_id="acme", item=it, **kw), metadata=s.md())


async def get(s: Storage, sk: str, pk: str = "p") -> items_pb2.Item:
    return await s.stub.GetItem(
        items_pb2.GetItemRequest(tenant_id="acme", collection="orders", partition_key=pk, sort_key=sk),
        metadata=s.md(),
    )


TYPED = {
    "i_max": AV(int_value=2**63 - 1),
    "i_min": AV(int_value=-(2**63)),
    "i_53": AV(int_value=2**53 + 1),
    "dec": AV(decimal_value="12345678901234567890.123456789"),
    "dec_zero": AV(decimal_value="1.50"),
    "dec_small": AV(decimal_value="0.0000001"),
    "f": AV(double_value=0.1),
    "f_neg_zero": AV(double_value=-0.0),
    "f_one": AV(double_value=1.0),
    "t": AV(bool_value=True),
    "n": AV(null_value=struct_pb2.NULL_VALUE),
    "s": AV(string_value="😀 שלום \x01"),
    "empty_s": AV(string_value=""),
    "empty_map": AV(map_value=items_pb2.AttributeMap()),
    "empty_list": AV(list_value=items_pb2.AttributeList()),
    "nested": AV(
        map_value=items_pb2.AttributeMap(
            fields={
                "l": AV(list_value=items_pb2.AttributeList(values=[AV(int_value=1), AV(bool_value=False)])),
                "m": AV(map_value=items_pb2.AttributeMap(fields={"x": AV(decimal_value="-0.10")})),
            }
        )
    ),
}


async def test_typed_attributes_round_trip_exactly(storage: Storage) -> None:
    stored = await put(storage, item("typed", **TYPED))
    got = await get(storage, "typed")
    for message in (stored, got):
        assert set(message.attributes) == set(TYPED)
        for name, value in TYPED.items():
            assert message.attributes[name] == value, name
            assert message.attributes[name].WhichOneof("kind") == value.WhichOneof("kind"), name
    assert str(got.attributes["f_neg_zero"].double_value) == "-0.0"
    assert got.etag == stored.etag and got.create_time == stored.create_time


async def test_conditions_map_to_codes(storage: Storage) -> None:
    first = await put(storage, item("cond", v=AV(int_value=1)), must_not_exist=True)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await put(storage, item("cond", v=AV(int_value=2)), must_not_exist=True)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    second = await put(storage, item("cond", v=AV(int_value=3)), expected_etag=first.etag)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await put(storage, item("cond", v=AV(int_value=4)), expected_etag=first.etag)
    assert err.value.code() == grpc.StatusCode.ABORTED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await put(storage, item("cond", v=AV(int_value=5)), must_not_exist=True, expected_etag=first.etag)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await storage.stub.DeleteItem(
            items_pb2.DeleteItemRequest(
                tenant_id="acme",
                collection="orders",
                partition_key="p",
                sort_key="cond",
                expected_etag=first.etag,
            ),
            metadata=storage.md(),
        )
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert (await get(storage, "cond")).attributes["v"].int_value == 3
    await storage.stub.DeleteItem(
        items_pb2.DeleteItemRequest(
            tenant_id="acme",
            collection="orders",
            partition_key="p",
            sort_key="cond",
            expected_etag=second.etag,
        ),
        metadata=storage.md(),
    )
    for call in (
        get(storage, "cond"),
        storage.stub.DeleteItem(
            items_pb2.DeleteItemRequest(
                tenant_id="acme", collection="orders", partition_key="p", sort_key="cond"
            ),
            metadata=storage.md(),
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_invalid_values_are_refused(storage: Storage) -> None:
    for bad in (
        AV(double_value=float("nan")),
        AV(double_value=float("inf")),
        AV(decimal_value="1e5"),
        AV(decimal_value="01.5"),
        AV(),  # no kind
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await put(storage, item("bad", v=bad))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await get(storage, "bad")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_item_size_limit(storage: Storage) -> None:
    big = "x" * 300_000
    too_big = item("huge", a=AV(string_value=big), b=AV(string_value=big))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await put(storage, too_big)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(err.value).reason == "ITEM_TOO_LARGE"
    assert "item" in bad_request(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await storage.stub.BatchWriteItems(
            items_pb2.BatchWriteItemsRequest(
                tenant_id="acme",
                writes=[items_pb2.BatchWrite(put=item("ok")), items_pb2.BatchWrite(put=too_big)],
            ),
            metadata=storage.md(),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "writes[1].put" in bad_request(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await storage.stub.TransactWriteItems(
            items_pb2.TransactWriteItemsRequest(
                tenant_id="acme", writes=[items_pb2.TransactWrite(put=items_pb2.TransactPut(item=too_big))]
            ),
            metadata=storage.md(),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for sk in ("huge", "ok"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await get(storage, sk)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # just under the limit is fine
    fits = await put(storage, item("fits", a=AV(string_value="y" * 400_000)))
    assert len(fits.attributes["a"].string_value) == 400_000


async def test_query_default_page_size_conditions_and_order(storage: Storage) -> None:
    for start in (0, 100):
        await storage.stub.BatchWriteItems(
            items_pb2.BatchWriteItemsRequest(
                tenant_id="acme",
                writes=[
                    items_pb2.BatchWrite(put=item(f"k{i:03d}", pk="q", n=AV(int_value=i)))
                    for i in range(start, min(start + 100, 105))
                ],
            ),
            metadata=storage.md(),
        )

    async def query(**kw: object) -> items_pb2.QueryItemsResponse:
        return await storage.stub.QueryItems(
            items_pb2.QueryItemsRequest(tenant_id="acme", collection="orders", partition_key="q", **kw),
            metadata=storage.md(),
        )

    first = await query()
    assert len(first.items) == 100 and first.next_page_token
    second = await query(page_token=first.next_page_token)
    assert [i.sort_key for i in second.items] == [f"k{i:03d}" for i in range(100, 105)]
    assert second.next_page_token == ""
    assert [i.sort_key for i in (await query(sort_key_equals="k007")).items] == ["k007"]
    assert len((await query(sort_key_prefix="k01")).items) == 10
    ranged = await query(
        sort_key_range=items_pb2.SortKeyRange(start="k010", end="k013"), descending=True, page_size=3
    )
    assert [i.sort_key for i in ranged.items] == ["k013", "k012", "k011"]
    rest = await query(
        sort_key_range=items_pb2.SortKeyRange(start="k010", end="k013"),
        descending=True,
        page_size=3,
        page_token=ranged.next_page_token,
    )
    assert [i.sort_key for i in rest.items] == ["k010"] and rest.next_page_token == ""
    open_range = await query(sort_key_range=items_pb2.SortKeyRange(start="k103"))
    assert [i.sort_key for i in open_range.items] == ["k103", "k104"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await query(sort_key_prefix="k1", page_token=first.next_page_token)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_batch_get_reports_missing_keys(storage: Storage) -> None:
    await put(storage, item("b1", pk="b"))
    await put(storage, item("b2", pk="b"))
    answer = await storage.stub.BatchGetItems(
        items_pb2.BatchGetItemsRequest(
            tenant_id="acme", keys=[ikey("b2", "b"), ikey("zz", "b"), ikey("b1", "b"), ikey("b1", "other")]
        ),
        metadata=storage.md(),
    )
    assert [i.sort_key for i in answer.items] == ["b2", "b1"]
    assert list(answer.missing_keys) == [ikey("zz", "b"), ikey("b1", "other")]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await storage.stub.BatchGetItems(
            items_pb2.BatchGetItemsRequest(tenant_id="acme", keys=[ikey("b1", "b"), ikey("b1", "b")]),
            metadata=storage.md(),
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "keys[1]" in bad_request(err.value)


async def test_batch_write_returns_puts_in_order(storage: Storage) -> None:
    await put(storage, item("w0", pk="w"))
    answer = await storage.stub.BatchWriteItems(
        items_pb2.BatchWriteItemsRequest(
            tenant_id="acme",
            writes=[
                items_pb2.BatchWrite(put=item("w2", pk="w", v=AV(bool_value=True))),
                items_pb2.BatchWrite(delete=ikey("w0", "w")),
                items_pb2.BatchWrite(put=item("w1", pk="w")),
            ],
        ),
        metadata=storage.md(),
    )
    assert [i.sort_key for i in answer.items] == ["w2", "w1"]
    assert answer.items[0].attributes["v"].bool_value is True and answer.items[0].etag
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await get(storage, "w0", pk="w")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_transaction_failure_names_the_operation(storage: Storage) -> None:
    existing = await put(storage, item("t-existing", pk="t"))
    other = await put(storage, item("t-other", pk="t"))

    def tput(sk: str, **kw: object) -> items_pb2.TransactWrite:
        return items_pb2.TransactWrite(put=items_pb2.TransactPut(item=item(sk, pk="t"), **kw))

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await storage.stub.TransactWriteItems(
            items_pb2.TransactWriteItemsRequest(
                tenant_id="acme",
                writes=[
                    tput("t-new"),
                    items_pb2.TransactWrite(
                        condition_check=items_pb2.TransactConditionCheck(
                            key=ikey("t-other", "t"), expected_etag=other.etag
                        )
                    ),
                    tput("t-existing", must_not_exist=True),
                ],
            ),
            metadata=storage.md(),
        )
    assert err.value.code() == grpc.StatusCode.ABORTED
    info = error_info(err.value)
    assert info.metadata["operation_index"] == "2"
    with pytest.raises(grpc.aio.AioRpcError) as nf:
        await get(storage, "t-new", pk="t")
    assert nf.value.code() == grpc.StatusCode.NOT_FOUND

    ok = await storage.stub.TransactWriteItems(
        items_pb2.TransactWriteItemsRequest(
            tenant_id="acme",
            writes=[
                tput("t-new", must_not_exist=True),
                items_pb2.TransactWrite(
                    delete=items_pb2.TransactDelete(key=ikey("t-existing", "t"), expected_etag=existing.etag)
                ),
            ],
        ),
        metadata=storage.md(),
    )
    assert [i.sort_key for i in ok.items] == ["t-new"]
    for bad in (
        [tput("dup"), items_pb2.TransactWrite(delete=items_pb2.TransactDelete(key=ikey("dup", "t")))],
        [tput("both", must_not_exist=True, expected_etag="abc")],
        [
            items_pb2.TransactWrite(
                condition_check=items_pb2.TransactConditionCheck(
                    key=ikey("x", "t"), must_not_exist=True, expected_etag="abc"
                )
            )
        ],
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await storage.stub.TransactWriteItems(
                items_pb2.TransactWriteItemsRequest(tenant_id="acme", writes=bad), metadata=storage.md()
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
