"""Pure rules: attribute conversion (proto <-> Python <-> tagged JSON), key rules, page tokens."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest
from google.protobuf import struct_pb2
from makoto.storage.v1 import items_pb2

from services.common.errors import InvalidArgument
from services.storage.attributes import (
    MAX_ITEM_BYTES,
    attributes_from_proto,
    attributes_to_proto,
    check_item_size,
    decimal_text,
    from_proto,
    to_proto,
)
from services.storage.keys import key_problem, validate_object_key
from services.storage.paging import decode_page_token, encode_page_token, prefix_upper_bound, scope_of
from services.storage.ports import AttrValue
from services.storage.tagged_json import dumps_attributes as encode_attributes
from services.storage.tagged_json import loads_attributes as decode_attributes

AV = items_pb2.AttributeValue


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


VALUES: list[AttrValue] = [
    None,
    True,
    False,
    0,
    1,
    2**63 - 1,
    -(2**63),
    2**53 + 1,
    0.0,
    -0.0,
    1.0,
    0.1,
    1e300,
    5e-324,
    Decimal("1.50"),
    Decimal("-0.00"),
    Decimal("0.0000001"),
    Decimal("12345678901234567890.123456789"),
    "",
    '{"i": "1"}',
    "😀\x01\u05e9\u05dc\u05d5\u05dd",
    [],
    {},
    [1, 1.0, Decimal("1"), True, "1", None],
    {"i": "1", "m": {}, "d": [{}]},
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:30] for v in VALUES])
def test_proto_and_tagged_json_round_trip(value: AttrValue) -> None:
    assert same(from_proto(to_proto(value)), value)
    assert same(decode_attributes(encode_attributes({"v": value}))["v"], value)


def test_proto_kinds_are_exact() -> None:
    assert to_proto(True).WhichOneof("kind") == "bool_value"
    assert to_proto(1).WhichOneof("kind") == "int_value"
    assert to_proto(1.0).WhichOneof("kind") == "double_value"
    assert to_proto(Decimal("1")).WhichOneof("kind") == "decimal_value"
    assert to_proto(None).null_value == struct_pb2.NULL_VALUE
    assert to_proto(None).WhichOneof("kind") == "null_value"
    assert to_proto({}).WhichOneof("kind") == "map_value"
    assert to_proto([]).WhichOneof("kind") == "list_value"


def test_decimals_keep_their_written_form() -> None:
    assert decimal_text(Decimal("1.50")) == "1.50"
    assert decimal_text(Decimal("0.0000001")) == "0.0000001"  # str() would say 1E-7
    assert decimal_text(Decimal("1E+3")) == "1000"
    assert to_proto(Decimal("1.50")).decimal_value == "1.50"
    # tagged JSON keeps numbers as strings: no JSON number ever holds a value
    doc = json.loads(encode_attributes({"i": 2**63 - 1, "f": 0.1, "d": Decimal("1.50")}))
    assert doc == {"i": {"i": "9223372036854775807"}, "f": {"f": "0.1"}, "d": {"d": "1.50"}}


def test_bad_values_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        from_proto(AV(double_value=math.nan))
    with pytest.raises(InvalidArgument):
        from_proto(AV(decimal_value="NaN"))
    with pytest.raises(InvalidArgument):
        from_proto(AV())
    with pytest.raises(ValueError):
        to_proto(2**63)
    with pytest.raises(ValueError):
        to_proto(math.inf)
    with pytest.raises(ValueError):
        decode_attributes('{"v": {"x": 1}}')


def test_attribute_maps_convert_both_ways() -> None:
    item = items_pb2.Item(collection="c", partition_key="p", sort_key="s")
    attributes_to_proto({"a": 1, "b": {"c": [None]}}, item.attributes)
    assert same(attributes_from_proto(item.attributes), {"a": 1, "b": {"c": [None]}})


def test_item_size_limit() -> None:
    ok = items_pb2.Item(
        collection="c", partition_key="p", sort_key="s", attributes={"a": AV(string_value="x" * 400_000)}
    )
    check_item_size(ok)
    big = items_pb2.Item(
        collection="c",
        partition_key="p",
        sort_key="s",
        attributes={"a": AV(string_value="x" * MAX_ITEM_BYTES)},
    )
    with pytest.raises(InvalidArgument) as err:
        check_item_size(big, "writes[3].put")
    assert err.value.field_violations[0][0] == "writes[3].put"


@pytest.mark.parametrize(
    "key",
    ["a", "a/b", "a.b/c..d", "...", "a/.../b", "%2e%2e", "é😀", "x" * 1024, "é" * 512, " leading space"],
)
def test_good_keys(key: str) -> None:
    assert key_problem(key) is None
    assert validate_object_key(key) == key


@pytest.mark.parametrize(
    "key",
    ["", ".", "..", "../a", "a/..", "a/./b", "/a", "a/", "a//b", "a\x00", "x" * 1025, "é" * 513, "\ud800"],
)
def test_bad_keys(key: str) -> None:
    assert key_problem(key) is not None
    with pytest.raises(InvalidArgument) as err:
        validate_object_key(key, "header.key")
    assert err.value.field_violations[0][0] == "header.key"


def test_page_tokens() -> None:
    scope = scope_of("q", "p1")
    token = encode_page_token("last/key/é", scope)
    assert decode_page_token(token, scope) == "last/key/é"
    with pytest.raises(InvalidArgument):
        decode_page_token(token, scope_of("q", "p2"))
    for junk in ("", "!!!", "eyJrIjoxfQ", encode_page_token("x", scope)[:-3]):
        with pytest.raises(InvalidArgument):
            decode_page_token(junk, scope)
    assert prefix_upper_bound(b"ab") == b"ac"
    assert prefix_upper_bound(b"a\xff") == b"b"
    assert prefix_upper_bound(b"\xff\xff") is None
    assert prefix_upper_bound(b"") is None
