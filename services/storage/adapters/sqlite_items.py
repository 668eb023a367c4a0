"""Item store on SQLite: the embedded default (<tenant root>/items.sqlite3).

Layout: one table keyed by (collection, partition_key, sort_key). Partition and sort keys are
stored as BLOBs of their UTF-8 bytes, so SQLite compares them with memcmp: byte-wise order,
exactly what the contract promises (TEXT would compare the same here, but BLOB makes the
intent explicit and immune to a collation). Attributes are tagged JSON (tagged_json.py) so every
value type round-trips. Writes run as BEGIN IMMEDIATE transactions in the connection's own
thread, so conditions are checked and applied atomically.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from services.common.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from services.storage.item_codec import check_distinct_keys
from services.storage.paging import decode_page_token, encode_page_token, prefix_upper_bound, scope_of
from services.storage.ports import (
    Attributes,
    ConditionCheckOp,
    DeleteOp,
    ItemCapabilities,
    ItemKey,
    ItemPage,
    ItemQuery,
    PutOp,
    StoredItem,
    TransactOp,
)
from services.storage.sqlite_thread import SqliteThread, transaction
from services.storage.tagged_json import dumps_attributes, loads_attributes

if TYPE_CHECKING:
    from makoto.tenant.v1 import tenant_pb2

    from services.storage.registry import AdapterContext

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    collection    TEXT    NOT NULL,
    partition_key BLOB    NOT NULL,
    sort_key      BLOB    NOT NULL,
    attributes    TEXT    NOT NULL,
    etag          TEXT    NOT NULL,
    created_us    INTEGER NOT NULL,
    updated_us    INTEGER NOT NULL,
    PRIMARY KEY (collection, partition_key, sort_key)
) WITHOUT ROWID
"""

_COLUMNS = "collection, partition_key, sort_key, attributes, etag, created_us, updated_us"
_Row = tuple[str, bytes, bytes, str, str, int, int]


def _b(text: str) -> bytes:
    return text.encode("utf-8")


def _now_us() -> int:
    now = datetime.now(UTC)
    return int(now.timestamp()) * 1_000_000 + now.microsecond


def _dt(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def _item(row: _Row) -> StoredItem:
    collection, pk, sk, attrs, etag, created, updated = row
    return StoredItem(
        key=ItemKey(collection, pk.decode("utf-8"), sk.decode("utf-8")),
        attributes=loads_attributes(attrs),
        etag=etag,
        created=_dt(created),
        updated=_dt(updated),
    )


def _new_etag() -> str:
    return uuid.uuid4().hex


class SqliteItemStore:
    """One tenant's items in one SQLite file."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 10_000) -> None:
        self._path = path
        self._db = SqliteThread(path, name="sqlite-items", busy_timeout_ms=busy_timeout_ms)
        self._opened = False

    @property
    def capabilities(self) -> ItemCapabilities:
        return ItemCapabilities(transactions=True, cross_partition_transactions=True, max_transaction_ops=100)

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        await self._db.open()
        await self._db.run(lambda conn: conn.execute(_SCHEMA))
        self._opened = True

    async def provision(self) -> None:
        if not self._opened:
            await self.open()
        else:
            await self._db.run(lambda conn: conn.execute(_SCHEMA))

    async def deprovision(self) -> None:
        await self.close()

        def remove() -> None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self._path}{suffix}").unlink(missing_ok=True)

        await asyncio.to_thread(remove)

    async def close(self) -> None:
        if self._opened:
            self._opened = False
            await self._db.close()

    # -- single items ---------------------------------------------------------------------

    async def get(self, key: ItemKey) -> StoredItem:
        row = await self._db.run(lambda conn: _select(conn, key))
        if row is None:
            raise NotFound("item not found", reason="ITEM_NOT_FOUND")
        return _item(row)

    async def put(
        self,
        key: ItemKey,
        attributes: Attributes,
        *,
        must_not_exist: bool = False,
        expected_etag: str | None = None,
    ) -> StoredItem:
        encoded = dumps_attributes(attributes)

        def body(conn: sqlite3.Connection) -> _Row:
            def tx() -> _Row:
                current = _select(conn, key)
                if must_not_exist and current is not None:
                    raise AlreadyExists("item already exists", reason="ITEM_EXISTS")
                if expected_etag and (current is None or current[4] != expected_etag):
                    raise Aborted("item etag does not match", reason="ETAG_MISMATCH")
                return _upsert(conn, key, encoded, current)

            return transaction(conn, tx)

        return _item(await self._db.run(body))

    async def delete(self, key: ItemKey, *, expected_etag: str | None = None) -> None:
        def body(conn: sqlite3.Connection) -> None:
            def tx() -> None:
                current = _select(conn, key)
                if current is None:
                    if expected_etag:
                        raise Aborted("item etag does not match", reason="ETAG_MISMATCH")
                    raise NotFound("item not found", reason="ITEM_NOT_FOUND")
                if expected_etag and current[4] != expected_etag:
                    raise Aborted("item etag does not match", reason="ETAG_MISMATCH")
                _delete(conn, key)

            transaction(conn, tx)

        await self._db.run(body)

    # -- query ----------------------------------------------------------------------------

    async def query(self, query: ItemQuery) -> ItemPage:
        cond = query.condition
        scope = scope_of(
            "sqlite-query",
            query.collection,
            query.partition_key,
            cond.kind if cond else "",
            cond.value if cond else "",
            (cond.start or "") if cond else "",
            (cond.end or "") if cond else "",
            "desc" if query.descending else "asc",
        )
        where = ["collection = ?", "partition_key = ?"]
        params: list[object] = [query.collection, _b(query.partition_key)]
        if cond is not None:
            if cond.kind == "eq":
                where.append("sort_key = ?")
                params.append(_b(cond.value))
            elif cond.kind == "prefix":
                low = _b(cond.value)
                where.append("sort_key >= ?")
                params.append(low)
                high = prefix_upper_bound(low)
                if high is not None:
                    where.append("sort_key < ?")
                    params.append(high)
            elif cond.kind == "range":
                if cond.start is not None:
                    where.append("sort_key >= ?")
                    params.append(_b(cond.start))
                if cond.end is not None:
                    where.append("sort_key <= ?")
                    params.append(_b(cond.end))
            else:
                raise InvalidArgument(f"unknown sort key condition {cond.kind!r}")
        if query.page_token:
            last = decode_page_token(query.page_token, scope)
            where.append("sort_key < ?" if query.descending else "sort_key > ?")
            params.append(_b(last))
        order = "DESC" if query.descending else "ASC"
        page_size = max(1, query.page_size)
        # One extra row tells whether another page exists, so the last page has no token.
        sql = (
            f"SELECT {_COLUMNS} FROM items WHERE {' AND '.join(where)} "  # noqa: S608 - fixed fragments
            f"ORDER BY sort_key {order} LIMIT ?"
        )
        params.append(page_size + 1)
        rows: list[_Row] = await self._db.run(lambda conn: conn.execute(sql, params).fetchall())
        more = len(rows) > page_size
        items = [_item(r) for r in rows[:page_size]]
        token = encode_page_token(items[-1].key.sort_key, scope) if more else ""
        return ItemPage(items=items, next_page_token=token)

    async def scan(self, page_size: int = 500) -> AsyncIterator[StoredItem]:
        """Every item, in key order (keyset pages: no offset re-reads)."""
        after: tuple[str, bytes, bytes] | None = None
        while True:
            where, params = "", []
            if after is not None:
                where, params = "WHERE (collection, partition_key, sort_key) > (?, ?, ?) ", list(after)
            sql = (
                f"SELECT {_COLUMNS} FROM items {where}"  # noqa: S608 - fixed fragments
                "ORDER BY collection, partition_key, sort_key LIMIT ?"
            )
            bound: list[object] = [*params, page_size]

            def page(conn: sqlite3.Connection, sql: str = sql, bound: list[object] = bound) -> list[_Row]:
                return list(conn.execute(sql, bound).fetchall())

            rows = await self._db.run(page)
            for row in rows:
                yield _item(row)
            if len(rows) < page_size:
                return
            after = (rows[-1][0], rows[-1][1], rows[-1][2])

    # -- batches and transactions --------------------------------------------------------

    async def batch_get(self, keys: Sequence[ItemKey]) -> list[StoredItem]:
        def body(conn: sqlite3.Connection) -> list[_Row]:
            found = []
            for key in keys:
                row = _select(conn, key)
                if row is not None:
                    found.append(row)
            return found

        return [_item(r) for r in await self._db.run(body)]

    async def batch_write(self, ops: Sequence[PutOp | DeleteOp]) -> list[StoredItem]:
        encoded = [dumps_attributes(op.attributes) if isinstance(op, PutOp) else "" for op in ops]

        def body(conn: sqlite3.Connection) -> list[_Row]:
            # One transaction is simply the fastest way to write many rows in SQLite; the
            # contract only promises non-atomic batches.
            def tx() -> list[_Row]:
                stored = []
                for op, attrs in zip(ops, encoded, strict=True):
                    if isinstance(op, PutOp):
                        stored.append(_upsert(conn, op.key, attrs, _select(conn, op.key)))
                    else:
                        _delete(conn, op.key)
                return stored

            return transaction(conn, tx)

        return [_item(r) for r in await self._db.run(body)]

    async def transact_write(self, ops: Sequence[TransactOp]) -> list[StoredItem]:
        check_distinct_keys(ops)
        encoded = [dumps_attributes(op.attributes) if isinstance(op, PutOp) else "" for op in ops]

        def body(conn: sqlite3.Connection) -> list[_Row]:
            def tx() -> list[_Row]:
                stored = []
                for i, (op, attrs) in enumerate(zip(ops, encoded, strict=True)):
                    current = _select(conn, op.key)
                    _check_condition(i, op, current)
                    if isinstance(op, PutOp):
                        stored.append(_upsert(conn, op.key, attrs, current))
                    elif isinstance(op, DeleteOp) and current is not None:
                        _delete(conn, op.key)
                return stored

            return transaction(conn, tx)

        return [_item(r) for r in await self._db.run(body)]


def _check_condition(index: int, op: TransactOp, current: _Row | None) -> None:
    def fail(why: str) -> Aborted:
        return Aborted(
            f"transaction cancelled: condition of operation {index} failed ({why})",
            reason="TRANSACTION_CONDITION_FAILED",
            metadata={"operation_index": str(index)},
        )

    must_not_exist = isinstance(op, (PutOp, ConditionCheckOp)) and op.must_not_exist
    if must_not_exist and current is not None:
        raise fail("item exists")
    if op.expected_etag:
        if current is None:
            raise fail("item missing")
        if current[4] != op.expected_etag:
            raise fail("etag mismatch")
    if isinstance(op, ConditionCheckOp) and not op.must_not_exist and current is None:
        raise fail("item missing")


def _select(conn: sqlite3.Connection, key: ItemKey) -> _Row | None:
    row: _Row | None = conn.execute(
        f"SELECT {_COLUMNS} FROM items WHERE collection = ? AND partition_key = ? AND sort_key = ?",  # noqa: S608
        (key.collection, _b(key.partition_key), _b(key.sort_key)),
    ).fetchone()
    return row


def _upsert(conn: sqlite3.Connection, key: ItemKey, encoded: str, current: _Row | None) -> _Row:
    now = _now_us()
    created = current[5] if current is not None else now
    row: _Row = (key.collection, _b(key.partition_key), _b(key.sort_key), encoded, _new_etag(), created, now)
    conn.execute(
        f"INSERT OR REPLACE INTO items ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        row,
    )
    return row


def _delete(conn: sqlite3.Connection, key: ItemKey) -> None:
    conn.execute(
        "DELETE FROM items WHERE collection = ? AND partition_key = ? AND sort_key = ?",
        (key.collection, _b(key.partition_key), _b(key.sort_key)),
    )


async def build(ctx: AdapterContext, binding: tenant_pb2.ItemStoreBinding) -> SqliteItemStore:
    """Registry factory: the tenant's SQLite file under its root (binding.database may name
    another file name inside the root)."""
    name = binding.database or "items.sqlite3"
    if "/" in name or name in (".", "..") or "\x00" in name:
        from services.common.errors import FailedPrecondition

        raise FailedPrecondition(
            "item_store binding: database must be a plain file name",
            reason="BINDING_INVALID",
            metadata={"binding": "item_store"},
        )
    store = SqliteItemStore(ctx.tenant_root / name)
    await store.open()
    return store
