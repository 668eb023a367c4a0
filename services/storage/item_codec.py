"""What the cloud item adapters (DynamoDB, Cosmos DB, PostgreSQL) share: the JSON-document
attribute codec, timestamps and etags, and the rules every adapter applies the same way.

JSON-document codec (Cosmos DB documents, PostgreSQL JSONB). It is the tagged JSON of
services/storage/attributes.py (SQLite), so a value reads the same everywhere:
  None -> null, bool -> true/false, str -> "...", list -> [...],
  int -> {"i": "<digits>"}, float -> {"f": repr(float)}, Decimal -> {"d": str(Decimal)},
  dict -> {"m": {...}}
plus two tags for what JSONB cannot hold (PostgreSQL refuses \\u0000 in JSONB text and keys):
  str containing NUL -> {"z": base64(UTF-8)}, dict with a key containing NUL -> {"n": {base64url(key): ...}}.
Numbers never travel as JSON numbers: a document store would turn them into doubles (Cosmos)
or lose the int / float / decimal distinction (JSONB numeric).
"""

from __future__ import annotations

import base64
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.common.errors import Aborted, InvalidArgument
from services.storage.attributes import INT64_MAX, INT64_MIN
from services.storage.paging import scope_of
from services.storage.ports import (
    Attributes,
    AttrValue,
    ConditionCheckOp,
    DeleteOp,
    ItemKey,
    ItemQuery,
    PutOp,
    TransactOp,
)

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


# -- JSON-document codec --------------------------------------------------------------------


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


# -- keys, times, etags --------------------------------------------------------------------

# Separator between collection and partition key in a composite partition value. Collection
# names match ^[A-Za-z][A-Za-z0-9_-]{0,62}$, so the first '#' always ends the collection.
PARTITION_SEPARATOR = "#"


def partition_value(collection: str, partition_key: str) -> str:
    return f"{collection}{PARTITION_SEPARATOR}{partition_key}"


def split_partition_value(value: str) -> tuple[str, str]:
    collection, _, partition_key = value.partition(PARTITION_SEPARATOR)
    return collection, partition_key


def now_us() -> int:
    now = datetime.now(UTC)
    return int(now.timestamp()) * 1_000_000 + now.microsecond


def from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def new_etag() -> str:
    return uuid.uuid4().hex


# -- rules every adapter applies the same way ---------------------------------------------


def check_transaction(ops: Sequence[TransactOp], max_ops: int) -> None:
    """Shape rules of transact_write, checked before anything is sent."""
    if not ops:
        raise InvalidArgument(
            "a transaction needs at least one operation", field_violations=[("writes", "empty")]
        )
    if len(ops) > max_ops:
        raise InvalidArgument(
            f"a transaction holds at most {max_ops} operations on this backend",
            field_violations=[("writes", f"{len(ops)} operations; at most {max_ops}")],
        )
    seen: set[ItemKey] = set()
    for i, op in enumerate(ops):
        if op.key in seen:
            raise InvalidArgument(
                "a transaction may touch each item only once",
                field_violations=[(f"writes[{i}]", "duplicate item key in transaction")],
            )
        seen.add(op.key)
        if isinstance(op, (PutOp, ConditionCheckOp)) and op.must_not_exist and op.expected_etag:
            raise InvalidArgument(
                "set at most one of must_not_exist and expected_etag",
                field_violations=[(f"writes[{i}]", "both must_not_exist and expected_etag")],
            )


def condition_failed(index: int, why: str, *, reason: str = "TRANSACTION_CONDITION_FAILED") -> Aborted:
    return Aborted(
        f"transaction cancelled: condition of operation {index} failed ({why})",
        reason=reason,
        metadata={"operation_index": str(index)},
    )


def check_against(index: int, op: TransactOp, current_etag: str | None) -> None:
    """A transaction op's condition against the item's current etag (None: item missing).
    Deleting a missing item without an expected etag is not a failure (as on SQLite)."""
    must_not_exist = isinstance(op, (PutOp, ConditionCheckOp)) and op.must_not_exist
    if must_not_exist and current_etag is not None:
        raise condition_failed(index, "item exists")
    if op.expected_etag:
        if current_etag is None:
            raise condition_failed(index, "item missing")
        if current_etag != op.expected_etag:
            raise condition_failed(index, "etag mismatch")
    if isinstance(op, ConditionCheckOp) and not op.must_not_exist and current_etag is None:
        raise condition_failed(index, "item missing")


def unique_keys(keys: Iterable[ItemKey]) -> list[ItemKey]:
    return list(dict.fromkeys(keys))


class SortBounds:
    """A query's sort-key condition reduced to what every backend can express:
    eq, or prefix, or an inclusive [start, end] range (either side open). `empty` is True when
    nothing can match (sort keys are never empty strings)."""

    __slots__ = ("empty", "end", "eq", "prefix", "start")

    def __init__(self, query: ItemQuery) -> None:
        self.eq: str | None = None
        self.prefix: str | None = None
        self.start: str | None = None
        self.end: str | None = None
        self.empty = False
        cond = query.condition
        if cond is None:
            return
        if cond.kind == "eq":
            self.eq = cond.value
            self.empty = cond.value == ""
        elif cond.kind == "prefix":
            self.prefix = cond.value or None
        elif cond.kind == "range":
            # Python compares str by code point, which is UTF-8 byte order.
            self.start = cond.start or None
            self.end = cond.end
            if self.end is not None:
                self.empty = self.end == "" or (self.start is not None and self.start > self.end)
        else:
            raise InvalidArgument(
                f"unknown sort key condition {cond.kind!r}",
                field_violations=[("sort_key_condition", "unknown kind")],
            )
        for text in (self.eq, self.prefix, self.start, self.end):
            if text is not None:
                check_text(text, "sort_key_condition")


def query_scope(backend: str, query: ItemQuery) -> str:
    """Page-token fingerprint of a query (see services/storage/paging.py)."""
    cond = query.condition
    return scope_of(
        f"{backend}-query",
        query.collection,
        query.partition_key,
        cond.kind if cond else "",
        cond.value if cond else "",
        (cond.start or "") if cond else "",
        "\x00" if cond is None or cond.end is None else cond.end,
        "desc" if query.descending else "asc",
    )


def page_size_of(query: ItemQuery) -> int:
    return max(1, query.page_size)  # as on SQLite; the service applies the default and the cap


def put_ops_only(ops: Sequence[PutOp | DeleteOp]) -> list[PutOp]:
    return [op for op in ops if isinstance(op, PutOp)]


__all__ = [
    "PARTITION_SEPARATOR",
    "SortBounds",
    "attributes_from_document",
    "attributes_to_document",
    "check_against",
    "check_decimal",
    "check_float",
    "check_int",
    "check_text",
    "check_transaction",
    "condition_failed",
    "from_document",
    "from_us",
    "new_etag",
    "now_us",
    "page_size_of",
    "partition_value",
    "query_scope",
    "split_partition_value",
    "to_document",
    "unique_keys",
    "unsupported",
]
