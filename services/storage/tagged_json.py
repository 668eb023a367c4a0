"""The one tagged-JSON codec for item attributes, used by every backend that stores attributes
as JSON: SQLite (text), PostgreSQL (JSONB), Cosmos DB (documents); DynamoDB uses its scalar rules.

  None -> null, bool -> true/false, str -> "...", list -> [...],
  int -> {"i": "<digits>"}, float -> {"f": repr(float)} (round-trips, keeps -0.0),
  Decimal -> {"d": str(Decimal)} (exact, "1.50" stays "1.50"), dict -> {"m": {...}}
plus two tags for what JSONB cannot hold (PostgreSQL refuses \\u0000 in JSONB text and keys):
  str containing NUL -> {"z": base64(UTF-8)}, dict with a key containing NUL -> {"n": {base64url(key): ...}}.
Every JSON object is a tag, so a map can never be mistaken for a number, and numbers never travel
as JSON numbers: a document store would turn them into doubles (Cosmos) or lose the int / float /
decimal distinction (JSONB numeric).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from services.common.errors import InvalidArgument
from services.storage.ports import Attributes, AttrValue

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# -- scalar rules shared by every encoding --------------------------------------------------


def check_int(value: int, path: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidArgument(
            "integer attribute outside int64", field_violations=[(path, "integer outside int64")]
        )
    return value


def check_float(value: float, path: str) -> float:
    if not math.isfinite(value):
        raise InvalidArgument("float attributes must be finite", field_violations=[(path, "not finite")])
    return value


def check_decimal(value: Decimal, path: str) -> Decimal:
    if not value.is_finite():
        raise InvalidArgument("decimal attributes must be finite", field_violations=[(path, "not finite")])
    return value


def check_text(value: str, path: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(
            "strings must be valid Unicode", field_violations=[(path, "lone surrogate")]
        ) from exc
    return value


def unsupported(value: object, path: str) -> InvalidArgument:
    return InvalidArgument(
        "unsupported attribute type",
        field_violations=[(path, f"unsupported type {type(value).__name__}")],
    )


# -- the codec --------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text.encode("ascii")).decode("utf-8")


def to_document(value: AttrValue, path: str = "attributes") -> Any:
    """One attribute value as JSON-ready data (see the module docstring)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        check_text(value, path)
        return {"z": _b64(value)} if "\x00" in value else value
    if isinstance(value, int):
        return {"i": str(check_int(value, path))}
    if isinstance(value, float):
        return {"f": repr(check_float(value, path))}
    if isinstance(value, Decimal):
        return {"d": str(check_decimal(value, path))}
    if isinstance(value, list):
        return [to_document(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        body = _document_map(value, path)
        if any("\x00" in k for k in body):
            return {"n": {_b64(k): v for k, v in body.items()}}
        return {"m": body}
    raise unsupported(value, path)


def _document_map(value: Mapping[Any, AttrValue], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in value.items():
        if not isinstance(k, str):
            raise InvalidArgument("map keys must be strings", field_violations=[(path, "non-string key")])
        check_text(k, path)
        out[k] = to_document(v, f"{path}[{k!r}]")
    return out


def from_document(data: Any) -> AttrValue:
    if data is None or isinstance(data, (bool, str)):
        value: AttrValue = data
        return value
    if isinstance(data, list):
        return [from_document(v) for v in data]
    if isinstance(data, dict) and len(data) == 1:
        ((tag, payload),) = data.items()
        if tag == "i":
            return int(payload)
        if tag == "f":
            return float(payload)
        if tag == "d":
            return Decimal(payload)
        if tag == "z":
            return _unb64(payload)
        if tag == "m":
            return {k: from_document(v) for k, v in payload.items()}
        if tag == "n":
            return {_unb64(k): from_document(v) for k, v in payload.items()}
    raise ValueError("malformed tagged attribute value")


def attributes_to_document(attrs: Mapping[str, AttrValue]) -> dict[str, Any]:
    """Top-level attributes as one JSON object (same rules as a nested map)."""
    document: dict[str, Any] = to_document(dict(attrs))
    return document


def attributes_from_document(data: Any) -> Attributes:
    value = from_document(data)
    if not isinstance(value, dict):
        raise ValueError("malformed tagged attributes")
    return value


def dumps_attributes(attrs: Mapping[str, AttrValue]) -> str:
    """Attributes as compact JSON text (SQLite's column): a plain object of encoded values; its
    keys stay plain (JSON text, unlike JSONB, holds any key)."""
    document = {name: to_document(value, f"attributes[{name!r}]") for name, value in attrs.items()}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def loads_attributes(text: str | bytes) -> Attributes:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("malformed tagged attributes")
    return {name: from_document(value) for name, value in data.items()}
