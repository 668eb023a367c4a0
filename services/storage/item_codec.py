"""What the cloud item adapters (DynamoDB, Cosmos DB, PostgreSQL) share besides the attribute
codec (services/storage/tagged_json.py): timestamps and etags, and the rules every adapter
applies the same way."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from services.common.errors import Aborted, InvalidArgument
from services.storage.paging import scope_of
from services.storage.ports import (
    ConditionCheckOp,
    DeleteOp,
    ItemKey,
    ItemQuery,
    PutOp,
    TransactOp,
)
from services.storage.tagged_json import check_text

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


def check_distinct_keys(ops: Sequence[TransactOp]) -> None:
    """A transaction touches each item once (every backend refuses a second op on a key)."""
    seen: set[ItemKey] = set()
    for i, op in enumerate(ops):
        if op.key in seen:
            raise InvalidArgument(
                "a transaction may touch each item only once",
                field_violations=[(f"writes[{i}]", "duplicate item key in transaction")],
            )
        seen.add(op.key)


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
    check_distinct_keys(ops)
    for i, op in enumerate(ops):
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
    "check_against",
    "check_transaction",
    "condition_failed",
    "from_us",
    "new_etag",
    "now_us",
    "page_size_of",
    "partition_value",
    "query_scope",
    "split_partition_value",
    "unique_keys",
]
