"""The cloud adapters' encodings, without a backend: exactness, escaping, size and shape rules."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest

from services.common.errors import Aborted, InvalidArgument
from services.storage.adapters.dynamodb_items import codec as ddb
from services.storage.item_codec import (
    SortBounds,
    check_against,
    check_transaction,
    from_us,
    now_us,
)
from services.storage.ports import (
    AttrValue,
    ConditionCheckOp,
    DeleteOp,
    ItemKey,
    ItemQuery,
    PutOp,
    SortKeyCondition,
)
from services.storage.tagged_json import (
    attributes_from_document,
    attributes_to_document,
    dumps_attributes,
    from_document,
    loads_attributes,
    to_document,
)


def same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, Decimal):
        return a.as_tuple() == b.as_tuple()
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


AWKWARD: dict[str, AttrValue] = {
    "int": -(2**63),
    "dec": Decimal("-0.00"),
    "dec_exp": Decimal("1E+2"),
    "float": -0.0,
    "tiny": 5e-324,
    "nul_string": "a\x00b",
    "empty": "",
    "map": {"$f": 1, "$$": 2, "$~x": 3, "": 4, "k\x00": 5, "i": {"d": "x"}, "m": {}},
    "list": [[], {}, None, True, 1, 1.0, Decimal("1")],
    "tag_like": {"i": "1"},
}


@pytest.mark.parametrize("name", list(AWKWARD))
def test_dynamodb_encoding_round_trips(name: str) -> None:
    value = AWKWARD[name]
    wire = ddb.encode(value)
    assert same(ddb.decode(json.loads(json.dumps(wire))), value)


def test_dynamodb_numbers_are_exact() -> None:
    # Only ints travel as N; decimals and floats are tagged strings, so N always reads as int.
    assert ddb.encode(7) == {"N": "7"}
    assert ddb.encode(Decimal("1.50")) == {"M": {"$d": {"S": "1.50"}}}
    assert ddb.encode(0.1) == {"M": {"$f": {"S": "0.1"}}}
    assert ddb.encode(True) == {"BOOL": True}
    # an N written by someone else with a fraction is still exact
    assert same(ddb.decode({"N": "2.50"}), Decimal("2.50"))


def test_dynamodb_user_keys_never_look_like_tags() -> None:
    wire = ddb.encode({"$f": {"S": "1.0"}})
    assert list(wire["M"]) == ["$$f"]
    assert same(ddb.decode(wire), {"$f": {"S": "1.0"}})
    assert ddb.escape_key("") != "" and ddb.unescape_key(ddb.escape_key("")) == ""
    assert "\x00" not in ddb.escape_key("a\x00")


def test_dynamodb_item_size_rule() -> None:
    small = {"a": {"S": "x" * 1000}}
    assert ddb.item_size(small) == 1 + 1000
    big = {"a": {"S": "ü" * 205_000}}  # 410,000 UTF-8 bytes
    with pytest.raises(InvalidArgument) as caught:
        ddb.check_item_size(big)
    assert caught.value.reason == "ITEM_TOO_LARGE"
    assert caught.value.field_violations and caught.value.field_violations[0][0] == "item"


def test_dynamodb_depth_rule() -> None:
    value: AttrValue = "leaf"
    for _ in range(40):
        value = {"x": value}
    with pytest.raises(InvalidArgument):
        ddb.check_item_size({"a": ddb.encode(value)})


@pytest.mark.parametrize("bad", [2**63, -(2**63) - 1, math.inf, math.nan, Decimal("NaN"), b"bytes", "\ud800"])
def test_encoders_refuse_values_outside_the_contract(bad: Any) -> None:
    with pytest.raises(InvalidArgument):
        ddb.encode(bad)
    with pytest.raises(InvalidArgument):
        to_document(bad)


@pytest.mark.parametrize("name", list(AWKWARD))
def test_document_encoding_round_trips_through_json(name: str) -> None:
    value = AWKWARD[name]
    text = json.dumps(to_document(value), ensure_ascii=False)
    # PostgreSQL JSONB refuses \u0000: the encoding must never produce it
    assert "\\u0000" not in text and "\x00" not in text
    assert same(from_document(json.loads(text)), value)


def test_sqlite_text_is_the_document_codec_and_reads_what_sqlite_wrote_before() -> None:
    """One codec: SQLite's column is the document as JSON text. Rows written by SQLite's former
    codec (decimals in plain notation, NUL kept in a plain JSON string) still read the same."""
    value: dict[str, AttrValue] = {"a": [1, 2.5, Decimal("1.50"), {"b": None}], "c": "x\x00y"}
    assert json.loads(dumps_attributes(value)) == {k: to_document(v) for k, v in value.items()}
    assert same(loads_attributes(dumps_attributes(value)), value)
    old = '{"v":{"d":"0.0000001"},"s":"x\\u0000y","m":{"m":{"k":{"i":"-7"}}}}'
    assert same(loads_attributes(old), {"v": Decimal("1E-7"), "s": "x\x00y", "m": {"k": -7}})


def test_attribute_documents() -> None:
    doc = attributes_to_document({"k\x00": 1, "v": "x"})
    assert same(attributes_from_document(json.loads(json.dumps(doc))), {"k\x00": 1, "v": "x"})
    with pytest.raises(ValueError):
        attributes_from_document([1])


def test_time_round_trip() -> None:
    us = now_us()
    assert int(from_us(us).timestamp()) * 1_000_000 + from_us(us).microsecond == us


K = ItemKey("c", "p", "s")


def test_transaction_shape_rules() -> None:
    with pytest.raises(InvalidArgument):
        check_transaction([], 10)
    with pytest.raises(InvalidArgument):
        check_transaction([PutOp(ItemKey("c", "p", str(i)), {}) for i in range(11)], 10)
    with pytest.raises(InvalidArgument) as caught:
        check_transaction([PutOp(K, {}), DeleteOp(K)], 10)
    assert caught.value.field_violations[0][0] == "writes[1]"
    with pytest.raises(InvalidArgument):
        check_transaction([ConditionCheckOp(K, expected_etag="e", must_not_exist=True)], 10)


@pytest.mark.parametrize(
    ("op", "current", "fails"),
    [
        (PutOp(K, {}, must_not_exist=True), "e1", True),
        (PutOp(K, {}, must_not_exist=True), None, False),
        (PutOp(K, {}, expected_etag="e1"), "e1", False),
        (PutOp(K, {}, expected_etag="e1"), "e2", True),
        (PutOp(K, {}, expected_etag="e1"), None, True),
        (DeleteOp(K), None, False),
        (DeleteOp(K, expected_etag="e1"), None, True),
        (ConditionCheckOp(K), None, True),
        (ConditionCheckOp(K), "e1", False),
        (ConditionCheckOp(K, must_not_exist=True), "e1", True),
    ],
)
def test_condition_rules(op: Any, current: str | None, fails: bool) -> None:
    if fails:
        with pytest.raises(Aborted) as caught:
            check_against(3, op, current)
        assert caught.value.metadata == {"operation_index": "3"}
    else:
        check_against(3, op, current)


def test_sort_bounds() -> None:
    def bounds(cond: SortKeyCondition | None) -> SortBounds:
        return SortBounds(ItemQuery("c", "p", cond))

    assert bounds(SortKeyCondition("range", start="b", end="a")).empty
    assert bounds(SortKeyCondition("range", end="")).empty
    assert bounds(SortKeyCondition("eq", value="")).empty
    assert not bounds(SortKeyCondition("range", start="", end="a")).empty
    assert bounds(SortKeyCondition("range", start="", end="a")).start is None
    assert bounds(SortKeyCondition("prefix", value="")).prefix is None
    # code point order is UTF-8 byte order: U+FF5E sorts before U+1F600
    assert not bounds(SortKeyCondition("range", start="\uff5e", end="\U0001f600")).empty
    with pytest.raises(InvalidArgument):
        bounds(SortKeyCondition("other"))  # type: ignore[arg-type]
