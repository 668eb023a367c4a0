import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from makoto.api.v1 import rules_pb2 as _rules_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttributeValue(_message.Message):
    __slots__ = ("null_value", "bool_value", "int_value", "double_value", "decimal_value", "string_value", "list_value", "map_value")
    NULL_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    DECIMAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    LIST_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAP_VALUE_FIELD_NUMBER: _ClassVar[int]
    null_value: _struct_pb2.NullValue
    bool_value: bool
    int_value: int
    double_value: float
    decimal_value: str
    string_value: str
    list_value: AttributeList
    map_value: AttributeMap
    def __init__(self, null_value: _Optional[_Union[_struct_pb2.NullValue, str]] = ..., bool_value: _Optional[bool] = ..., int_value: _Optional[int] = ..., double_value: _Optional[float] = ..., decimal_value: _Optional[str] = ..., string_value: _Optional[str] = ..., list_value: _Optional[_Union[AttributeList, _Mapping]] = ..., map_value: _Optional[_Union[AttributeMap, _Mapping]] = ...) -> None: ...

class AttributeList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[AttributeValue]
    def __init__(self, values: _Optional[_Iterable[_Union[AttributeValue, _Mapping]]] = ...) -> None: ...

class AttributeMap(_message.Message):
    __slots__ = ("fields",)
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AttributeValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AttributeValue, _Mapping]] = ...) -> None: ...
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.MessageMap[str, AttributeValue]
    def __init__(self, fields: _Optional[_Mapping[str, AttributeValue]] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("collection", "partition_key", "sort_key", "attributes", "etag", "create_time", "update_time")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AttributeValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AttributeValue, _Mapping]] = ...) -> None: ...
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PARTITION_KEY_FIELD_NUMBER: _ClassVar[int]
    SORT_KEY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    collection: str
    partition_key: str
    sort_key: str
    attributes: _containers.MessageMap[str, AttributeValue]
    etag: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, collection: _Optional[str] = ..., partition_key: _Optional[str] = ..., sort_key: _Optional[str] = ..., attributes: _Optional[_Mapping[str, AttributeValue]] = ..., etag: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ItemKey(_message.Message):
    __slots__ = ("collection", "partition_key", "sort_key")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PARTITION_KEY_FIELD_NUMBER: _ClassVar[int]
    SORT_KEY_FIELD_NUMBER: _ClassVar[int]
    collection: str
    partition_key: str
    sort_key: str
    def __init__(self, collection: _Optional[str] = ..., partition_key: _Optional[str] = ..., sort_key: _Optional[str] = ...) -> None: ...

class GetItemRequest(_message.Message):
    __slots__ = ("tenant_id", "collection", "partition_key", "sort_key")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PARTITION_KEY_FIELD_NUMBER: _ClassVar[int]
    SORT_KEY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    collection: str
    partition_key: str
    sort_key: str
    def __init__(self, tenant_id: _Optional[str] = ..., collection: _Optional[str] = ..., partition_key: _Optional[str] = ..., sort_key: _Optional[str] = ...) -> None: ...

class PutItemRequest(_message.Message):
    __slots__ = ("tenant_id", "item", "must_not_exist", "expected_etag")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    MUST_NOT_EXIST_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ETAG_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    item: Item
    must_not_exist: bool
    expected_etag: str
    def __init__(self, tenant_id: _Optional[str] = ..., item: _Optional[_Union[Item, _Mapping]] = ..., must_not_exist: _Optional[bool] = ..., expected_etag: _Optional[str] = ...) -> None: ...

class DeleteItemRequest(_message.Message):
    __slots__ = ("tenant_id", "collection", "partition_key", "sort_key", "expected_etag")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PARTITION_KEY_FIELD_NUMBER: _ClassVar[int]
    SORT_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ETAG_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    collection: str
    partition_key: str
    sort_key: str
    expected_etag: str
    def __init__(self, tenant_id: _Optional[str] = ..., collection: _Optional[str] = ..., partition_key: _Optional[str] = ..., sort_key: _Optional[str] = ..., expected_etag: _Optional[str] = ...) -> None: ...

class SortKeyRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: str
    end: str
    def __init__(self, start: _Optional[str] = ..., end: _Optional[str] = ...) -> None: ...

class QueryItemsRequest(_message.Message):
    __slots__ = ("tenant_id", "collection", "partition_key", "sort_key_equals", "sort_key_prefix", "sort_key_range", "descending", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PARTITION_KEY_FIELD_NUMBER: _ClassVar[int]
    SORT_KEY_EQUALS_FIELD_NUMBER: _ClassVar[int]
    SORT_KEY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    SORT_KEY_RANGE_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    collection: str
    partition_key: str
    sort_key_equals: str
    sort_key_prefix: str
    sort_key_range: SortKeyRange
    descending: bool
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., collection: _Optional[str] = ..., partition_key: _Optional[str] = ..., sort_key_equals: _Optional[str] = ..., sort_key_prefix: _Optional[str] = ..., sort_key_range: _Optional[_Union[SortKeyRange, _Mapping]] = ..., descending: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class QueryItemsResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class BatchGetItemsRequest(_message.Message):
    __slots__ = ("tenant_id", "keys")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    keys: _containers.RepeatedCompositeFieldContainer[ItemKey]
    def __init__(self, tenant_id: _Optional[str] = ..., keys: _Optional[_Iterable[_Union[ItemKey, _Mapping]]] = ...) -> None: ...

class BatchGetItemsResponse(_message.Message):
    __slots__ = ("items", "missing_keys")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MISSING_KEYS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    missing_keys: _containers.RepeatedCompositeFieldContainer[ItemKey]
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., missing_keys: _Optional[_Iterable[_Union[ItemKey, _Mapping]]] = ...) -> None: ...

class BatchWrite(_message.Message):
    __slots__ = ("put", "delete")
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    put: Item
    delete: ItemKey
    def __init__(self, put: _Optional[_Union[Item, _Mapping]] = ..., delete: _Optional[_Union[ItemKey, _Mapping]] = ...) -> None: ...

class BatchWriteItemsRequest(_message.Message):
    __slots__ = ("tenant_id", "writes")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    writes: _containers.RepeatedCompositeFieldContainer[BatchWrite]
    def __init__(self, tenant_id: _Optional[str] = ..., writes: _Optional[_Iterable[_Union[BatchWrite, _Mapping]]] = ...) -> None: ...

class BatchWriteItemsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ...) -> None: ...

class TransactPut(_message.Message):
    __slots__ = ("item", "must_not_exist", "expected_etag")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    MUST_NOT_EXIST_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ETAG_FIELD_NUMBER: _ClassVar[int]
    item: Item
    must_not_exist: bool
    expected_etag: str
    def __init__(self, item: _Optional[_Union[Item, _Mapping]] = ..., must_not_exist: _Optional[bool] = ..., expected_etag: _Optional[str] = ...) -> None: ...

class TransactDelete(_message.Message):
    __slots__ = ("key", "expected_etag")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ETAG_FIELD_NUMBER: _ClassVar[int]
    key: ItemKey
    expected_etag: str
    def __init__(self, key: _Optional[_Union[ItemKey, _Mapping]] = ..., expected_etag: _Optional[str] = ...) -> None: ...

class TransactConditionCheck(_message.Message):
    __slots__ = ("key", "expected_etag", "must_not_exist")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ETAG_FIELD_NUMBER: _ClassVar[int]
    MUST_NOT_EXIST_FIELD_NUMBER: _ClassVar[int]
    key: ItemKey
    expected_etag: str
    must_not_exist: bool
    def __init__(self, key: _Optional[_Union[ItemKey, _Mapping]] = ..., expected_etag: _Optional[str] = ..., must_not_exist: _Optional[bool] = ...) -> None: ...

class TransactWrite(_message.Message):
    __slots__ = ("put", "delete", "condition_check")
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    CONDITION_CHECK_FIELD_NUMBER: _ClassVar[int]
    put: TransactPut
    delete: TransactDelete
    condition_check: TransactConditionCheck
    def __init__(self, put: _Optional[_Union[TransactPut, _Mapping]] = ..., delete: _Optional[_Union[TransactDelete, _Mapping]] = ..., condition_check: _Optional[_Union[TransactConditionCheck, _Mapping]] = ...) -> None: ...

class TransactWriteItemsRequest(_message.Message):
    __slots__ = ("tenant_id", "writes")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    writes: _containers.RepeatedCompositeFieldContainer[TransactWrite]
    def __init__(self, tenant_id: _Optional[str] = ..., writes: _Optional[_Iterable[_Union[TransactWrite, _Mapping]]] = ...) -> None: ...

class TransactWriteItemsResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Item]
    def __init__(self, items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ...) -> None: ...
