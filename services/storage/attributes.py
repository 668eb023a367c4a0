"""Attribute values: proto AttributeValue <-> Python AttrValue (ports.AttrValue), exactly.
(How adapters store them without losing a type: services/storage/tagged_json.py.)

Contract choice (issue 2): numbers are typed on the wire. int_value is an exact int64,
decimal_value an exact decimal string kept as written ("1.50" stays "1.50"), double_value a
finite double. Nothing is ever squeezed through a double.

"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from decimal import Decimal, InvalidOperation
from typing import Any

from google.protobuf import struct_pb2
from makoto.storage.v1 import items_pb2

from services.common.errors import InvalidArgument
from services.storage.ports import Attributes, AttrValue
from services.storage.tagged_json import INT64_MAX, INT64_MIN

# Largest encoded item the service accepts, whatever the backend (DynamoDB's limit).
MAX_ITEM_BYTES = 400 * 1024


def decimal_text(value: Decimal) -> str:
    """Plain notation, exactly as stored: never '1E-7', and '1.50' keeps its trailing zero."""
    return format(value, "f")


# -- proto -> Python ------------------------------------------------------------------------


def from_proto(value: items_pb2.AttributeValue, path: str = "value") -> AttrValue:
    kind = value.WhichOneof("kind")
    if kind == "null_value":
        return None
    if kind == "bool_value":
        return bool(value.bool_value)
    if kind == "int_value":
        return int(value.int_value)
    if kind == "double_value":
        number = float(value.double_value)
        if not math.isfinite(number):
            raise InvalidArgument(
                "double values must be finite", field_violations=[(path, "not a finite double")]
            )
        return number
    if kind == "decimal_value":
        return _parse_decimal(value.decimal_value, path)
    if kind == "string_value":
        return str(value.string_value)
    if kind == "list_value":
        return [from_proto(v, f"{path}[{i}]") for i, v in enumerate(value.list_value.values)]
    if kind == "map_value":
        return {k: from_proto(v, f"{path}[{k!r}]") for k, v in value.map_value.fields.items()}
    raise InvalidArgument("attribute value has no kind", field_violations=[(path, "no kind set")])


def attributes_from_proto(
    attrs: Mapping[str, items_pb2.AttributeValue], path: str = "attributes"
) -> Attributes:
    return {k: from_proto(v, f"{path}[{k!r}]") for k, v in attrs.items()}


def _parse_decimal(text: str, path: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation as exc:
        raise InvalidArgument("invalid decimal", field_violations=[(path, "not a decimal string")]) from exc
    if not number.is_finite():
        raise InvalidArgument("invalid decimal", field_violations=[(path, "not finite")])
    return number


# -- Python -> proto ------------------------------------------------------------------------


def to_proto(value: AttrValue) -> items_pb2.AttributeValue:
    out = items_pb2.AttributeValue()
    _fill(out, value)
    return out


def attributes_to_proto(attrs: Mapping[str, AttrValue], target: MutableMapping[str, Any]) -> None:
    """Fill a proto map field (e.g. Item.attributes) from Python attributes."""
    for name, value in attrs.items():
        _fill(target[name], value)


def _fill(out: items_pb2.AttributeValue, value: AttrValue) -> None:
    # bool before int: bool is an int subclass in Python but a different type here.
    if value is None:
        out.null_value = struct_pb2.NULL_VALUE  # type: ignore[assignment]  # stub mismatch
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError("integer attribute outside int64")
        out.int_value = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite float attribute")
        out.double_value = value
    elif isinstance(value, Decimal):
        out.decimal_value = decimal_text(value)
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, list):
        out.list_value.SetInParent()
        for element in value:
            _fill(out.list_value.values.add(), element)
    elif isinstance(value, dict):
        out.map_value.SetInParent()
        for name, element in value.items():
            _fill(out.map_value.fields[name], element)
    else:
        raise TypeError(f"unsupported attribute type {type(value).__name__}")


# -- size ----------------------------------------------------------------------------------


def check_item_size(item: items_pb2.Item, field: str = "item") -> None:
    """Refuse an item whose encoded size (protobuf bytes of key + attributes) is over 400 KiB,
    for every backend alike, before anything is sent to a backend."""
    size = item.ByteSize()
    if size > MAX_ITEM_BYTES:
        raise InvalidArgument(
            f"item is {size} bytes encoded; the limit is {MAX_ITEM_BYTES}",
            field_violations=[(field, f"encoded size {size} exceeds {MAX_ITEM_BYTES} bytes")],
            reason="ITEM_TOO_LARGE",
        )
