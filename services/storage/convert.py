"""Port values <-> proto messages for StorageService."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2
from makoto.storage.v1 import items_pb2, objects_pb2

from services.storage.attributes import attributes_to_proto
from services.storage.ports import ItemKey, ObjectInfo, StoredItem


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


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
