"""DynamoDB wire encoding of items: key layout, attribute values, and the item-size rule.

Key layout (one table holds every collection of the tenant):
  pk = "<collection>#<partition_key>"  (collection names never contain '#')
  sk = "<sort_key>"                     (raw: DynamoDB orders string sort keys by UTF-8 bytes,
                                         exactly the contract's order, so no escaping is needed)
Other attributes: a (the user attributes, one map), e (etag), ct / ut (created / updated,
epoch microseconds).

Attribute values are native DynamoDB types where those are exact, tagged where not:
  None -> NULL, bool -> BOOL, str -> S (empty strings are fine outside keys), int -> N
  (only ints are ever written as N, so an N always reads back as int), list -> L,
  float -> M {"$f": S repr(float)} (keeps -0.0 and every bit), Decimal -> M {"$d": S str(d)}
  ("1.50" stays "1.50"; N would normalise it), dict -> M with keys escaped so that a user key
  can never look like a tag: a key starting with "$" gets another "$", an empty key or one
  containing NUL becomes "$~" + base64url(UTF-8). A tag adds one nesting level, so user maps keep DynamoDB's
  32-level depth almost whole.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from services.common.errors import InvalidArgument
from services.storage.item_codec import (
    partition_value,
    split_partition_value,
)
from services.storage.ports import Attributes, AttrValue, ItemKey
from services.storage.tagged_json import (
    check_decimal,
    check_float,
    check_int,
    check_text,
    unsupported,
)

PK, SK, ATTRS, ETAG, CREATED, UPDATED = "pk", "sk", "a", "e", "ct", "ut"
FLOAT_TAG, DECIMAL_TAG = "$f", "$d"

MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item size limit
MAX_DEPTH = 32  # DynamoDB's nesting limit for maps and lists

Wire = dict[str, Any]  # one DynamoDB AttributeValue, e.g. {"S": "x"}


def key_of(key: ItemKey) -> dict[str, Wire]:
    return {PK: {"S": partition_value(key.collection, key.partition_key)}, SK: {"S": key.sort_key}}


def item_key_of(item: Mapping[str, Wire]) -> ItemKey:
    collection, partition_key = split_partition_value(item[PK]["S"])
    return ItemKey(collection, partition_key, item[SK]["S"])


def escape_key(name: str) -> str:
    # DynamoDB refuses empty attribute names; NUL is escaped for the same safety margin.
    if "\x00" in name or name == "":
        return "$~" + base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii")
    if name.startswith("$"):
        return "$" + name
    return name


def unescape_key(name: str) -> str:
    if name.startswith("$~"):
        return base64.urlsafe_b64decode(name[2:].encode("ascii")).decode("utf-8")
    if name.startswith("$$"):
        return name[1:]
    return name


def encode(value: AttrValue, path: str = "attributes") -> Wire:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": check_text(value, path)}
    if isinstance(value, int):
        return {"N": str(check_int(value, path))}
    if isinstance(value, float):
        return {"M": {FLOAT_TAG: {"S": repr(check_float(value, path))}}}
    if isinstance(value, Decimal):
        return {"M": {DECIMAL_TAG: {"S": str(check_decimal(value, path))}}}
    if isinstance(value, list):
        return {"L": [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        return {"M": encode_map(value, path)}
    raise unsupported(value, path)


def encode_map(value: Mapping[Any, AttrValue], path: str = "attributes") -> dict[str, Wire]:
    out: dict[str, Wire] = {}
    for name, element in value.items():
        if not isinstance(name, str):
            raise InvalidArgument("map keys must be strings", field_violations=[(path, "non-string key")])
        out[escape_key(check_text(name, path))] = encode(element, f"{path}[{name!r}]")
    return out


def decode(wire: Wire) -> AttrValue:
    ((kind, payload),) = wire.items()
    if kind == "NULL":
        return None
    if kind == "BOOL":
        return bool(payload)
    if kind == "S":
        return str(payload)
    if kind == "N":
        try:
            return int(payload)
        except ValueError:  # written by something else: keep it exact anyway
            try:
                return Decimal(payload)
            except InvalidOperation as exc:
                raise ValueError("malformed DynamoDB number") from exc
    if kind == "L":
        return [decode(v) for v in payload]
    if kind == "M":
        if len(payload) == 1:
            ((tag, inner),) = payload.items()
            if tag == FLOAT_TAG:
                return float(inner["S"])
            if tag == DECIMAL_TAG:
                return Decimal(inner["S"])
        return decode_map(payload)
    if kind in ("SS", "NS"):
        return [decode({kind[0]: v}) for v in payload]
    raise ValueError(f"DynamoDB type {kind} is not an attribute value of this store")


def decode_map(payload: Mapping[str, Wire]) -> Attributes:
    return {unescape_key(k): decode(v) for k, v in payload.items()}


# -- size ------------------------------------------------------------------------------------


def _value_size(wire: Wire, depth: int) -> int:
    """Bytes DynamoDB bills for a value (its documented rules; numbers rounded up)."""
    if depth > MAX_DEPTH:
        raise InvalidArgument(
            f"attributes nest deeper than DynamoDB's {MAX_DEPTH} levels",
            field_violations=[("item.attributes", f"nesting deeper than {MAX_DEPTH} levels")],
            reason="ITEM_TOO_DEEP",
        )
    ((kind, payload),) = wire.items()
    if kind == "S":
        return len(payload.encode("utf-8"))
    if kind == "N":
        return len(payload) // 2 + 2
    if kind in ("NULL", "BOOL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + _value_size(v, depth + 1) + 1 for k, v in payload.items())
    if kind == "L":
        return 3 + sum(_value_size(v, depth + 1) + 1 for v in payload)
    raise ValueError(f"unexpected DynamoDB type {kind}")


def item_size(item: Mapping[str, Wire]) -> int:
    return sum(len(name.encode("utf-8")) + _value_size(value, 1) for name, value in item.items())


def check_item_size(item: Mapping[str, Wire], field: str = "item") -> int:
    """Refuse, before sending, an item DynamoDB would refuse for its size."""
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        raise InvalidArgument(
            f"item is {size} bytes as a DynamoDB item; DynamoDB items are limited to 400 KB",
            field_violations=[(field, f"{size} bytes encoded for DynamoDB; the limit is {MAX_ITEM_BYTES}")],
            reason="ITEM_TOO_LARGE",
        )
    return size
