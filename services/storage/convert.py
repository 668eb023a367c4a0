"""Port values <-> proto messages for StorageService (the proto-shaped checks included: they
name the request field at fault)."""

from __future__ import annotations

from makoto.storage.v1 import items_pb2, objects_pb2

from services.common.errors import InvalidArgument
from services.common.timestamps import timestamp
from services.storage.attributes import attributes_from_proto, attributes_to_proto, check_item_size
from services.storage.ports import (
    ConditionCheckOp,
    DeleteOp,
    ItemKey,
    ItemQuery,
    ObjectInfo,
    PutOp,
    SignMethod,
    SortKeyCondition,
    StoredItem,
    TransactOp,
)

_SIGN_METHODS: dict[int, SignMethod] = {
    objects_pb2.SIGNED_URL_METHOD_GET: "GET",
    objects_pb2.SIGNED_URL_METHOD_PUT: "PUT",
}


def object_metadata(info: ObjectInfo) -> objects_pb2.ObjectMetadata:
    return objects_pb2.ObjectMetadata(
        key=info.key,
        size_bytes=info.size,
        content_type=info.content_type,
        sha256=info.sha256,
        user_metadata=dict(info.user_metadata),
        etag=info.etag,
        create_time=timestamp(info.created),
        update_time=timestamp(info.updated),
    )


def item_message(item: StoredItem) -> items_pb2.Item:
    out = items_pb2.Item(
        collection=item.key.collection,
        partition_key=item.key.partition_key,
        sort_key=item.key.sort_key,
        etag=item.etag,
        create_time=timestamp(item.created),
        update_time=timestamp(item.updated),
    )
    attributes_to_proto(item.attributes, out.attributes)
    return out


def item_key(message: items_pb2.ItemKey | items_pb2.Item) -> ItemKey:
    return ItemKey(message.collection, message.partition_key, message.sort_key)


def key_message(key: ItemKey) -> items_pb2.ItemKey:
    return items_pb2.ItemKey(
        collection=key.collection, partition_key=key.partition_key, sort_key=key.sort_key
    )


def sign_method(value: int) -> SignMethod:
    method = _SIGN_METHODS.get(value)
    if method is None:
        raise InvalidArgument("method must be GET or PUT", field_violations=[("method", "unsupported")])
    return method


def _one_condition(must_not_exist: bool, expected_etag: str, field: str) -> None:
    if must_not_exist and expected_etag:
        raise InvalidArgument(
            "set at most one of must_not_exist and expected_etag",
            field_violations=[(field, "conflicts with must_not_exist")],
        )


def put_op(
    item: items_pb2.Item, path: str, must_not_exist: bool, expected_etag: str, etag_field: str
) -> PutOp:
    _one_condition(must_not_exist, expected_etag, etag_field)
    check_item_size(item, path)
    return PutOp(
        key=item_key(item),
        attributes=attributes_from_proto(item.attributes, f"{path}.attributes"),
        must_not_exist=must_not_exist,
        expected_etag=expected_etag or None,
    )


def batch_write_op(write: items_pb2.BatchWrite, path: str) -> PutOp | DeleteOp:
    if write.WhichOneof("operation") == "put":
        return put_op(write.put, f"{path}.put", False, "", "")
    return DeleteOp(item_key(write.delete))


def transact_op(write: items_pb2.TransactWrite, path: str) -> TransactOp:
    which = write.WhichOneof("operation")
    if which == "put":
        put = write.put
        return put_op(
            put.item, f"{path}.put.item", put.must_not_exist, put.expected_etag, f"{path}.put.expected_etag"
        )
    if which == "delete":
        return DeleteOp(item_key(write.delete.key), expected_etag=write.delete.expected_etag or None)
    check = write.condition_check
    _one_condition(check.must_not_exist, check.expected_etag, f"{path}.condition_check.expected_etag")
    return ConditionCheckOp(
        item_key(check.key), expected_etag=check.expected_etag or None, must_not_exist=check.must_not_exist
    )


def item_query(request: items_pb2.QueryItemsRequest, default_page_size: int) -> ItemQuery:
    which = request.WhichOneof("sort_key_condition")
    condition: SortKeyCondition | None = None
    if which == "sort_key_equals":
        condition = SortKeyCondition("eq", value=request.sort_key_equals)
    elif which == "sort_key_prefix":
        condition = SortKeyCondition("prefix", value=request.sort_key_prefix)
    elif which == "sort_key_range":
        rng = request.sort_key_range
        if rng.start or rng.end:
            condition = SortKeyCondition("range", start=rng.start or None, end=rng.end or None)
    return ItemQuery(
        collection=request.collection,
        partition_key=request.partition_key,
        condition=condition,
        descending=request.descending,
        page_size=request.page_size or default_page_size,
        page_token=request.page_token,
    )
