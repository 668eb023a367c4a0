"""Item store on PostgreSQL (asyncpg): one schema per tenant (or the schema the binding names,
in the tenant's own database if the DSN says so), one table for every collection.

Layout: items(collection text, partition_key bytea, sort_key bytea, attributes jsonb, etag,
created, updated), primary key (collection, partition_key, sort_key). Keys are bytea of their
UTF-8 bytes: PostgreSQL compares bytea with memcmp, which is the contract's byte-wise order
whatever the database collation, and bytea holds NUL, which text cannot. Attributes are tagged
JSON (services/storage/item_codec.py) because JSONB numeric cannot tell 1 from 1.0 from
Decimal("1.0") and refuses \\u0000.

Single writes are single statements whose WHERE / ON CONFLICT carry the condition, so the
check and the write are one atomic step. Transactions run SERIALIZABLE: conditions are read
and checked inside the transaction; a serialization failure is retried, then ABORTED.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # ships no type information

from services.common.errors import Aborted, AlreadyExists, MakotoError, NotFound
from services.storage.adapters.postgres_items.config import PostgresItemConfig, quote_ident
from services.storage.adapters.postgres_items.errors import translate
from services.storage.item_codec import (
    SortBounds,
    check_against,
    check_transaction,
    from_us,
    new_etag,
    now_us,
    page_size_of,
    query_scope,
    unique_keys,
)
from services.storage.paging import decode_page_token, encode_page_token, prefix_upper_bound
from services.storage.ports import (
    Attributes,
    DeleteOp,
    ItemCapabilities,
    ItemKey,
    ItemPage,
    ItemQuery,
    PutOp,
    StoredItem,
    TransactOp,
)
from services.storage.tagged_json import (
    attributes_from_document,
    attributes_to_document,
)

T = TypeVar("T")

TRANSACTION_LIMIT = 100
_SERIALIZATION_ATTEMPTS = 5
_COLUMNS = "collection, partition_key, sort_key, attributes, etag, created, updated"
_KEY = "collection = $1 AND partition_key = $2 AND sort_key = $3"


def _b(text: str) -> bytes:
    return text.encode("utf-8")


def _json(attributes: Attributes) -> str:
    return json.dumps(attributes_to_document(attributes), ensure_ascii=False, separators=(",", ":"))


def _stored(row: asyncpg.Record) -> StoredItem:
    return StoredItem(
        key=ItemKey(row["collection"], bytes(row["partition_key"]).decode(), bytes(row["sort_key"]).decode()),
        attributes=attributes_from_document(json.loads(row["attributes"])),
        etag=row["etag"],
        created=row["created"],
        updated=row["updated"],
    )


def _key_args(key: ItemKey) -> tuple[str, bytes, bytes]:
    return key.collection, _b(key.partition_key), _b(key.sort_key)


class _Statements:
    """The SQL of one schema (identifiers quoted once)."""

    def __init__(self, schema: str) -> None:
        s = quote_ident(schema)
        t = f"{s}.items"
        self.schema = s
        self.table = t
        self.create = [
            f"CREATE SCHEMA IF NOT EXISTS {s}",
            f"""CREATE TABLE IF NOT EXISTS {t} (
                collection    text COLLATE "C" NOT NULL,
                partition_key bytea NOT NULL,
                sort_key      bytea NOT NULL,
                attributes    jsonb NOT NULL,
                etag          text NOT NULL,
                created       timestamptz NOT NULL,
                updated       timestamptz NOT NULL,
                PRIMARY KEY (collection, partition_key, sort_key)
            )""",
        ]
        self.get = f"SELECT {_COLUMNS} FROM {t} WHERE {_KEY}"  # noqa: S608
        self.upsert = (
            f"INSERT INTO {t} ({_COLUMNS}) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $6) "  # noqa: S608
            "ON CONFLICT (collection, partition_key, sort_key) DO UPDATE SET "
            "attributes = EXCLUDED.attributes, etag = EXCLUDED.etag, updated = EXCLUDED.updated "
            "RETURNING created, updated"
        )
        self.insert = (
            f"INSERT INTO {t} ({_COLUMNS}) VALUES ($1, $2, $3, $4::jsonb, $5, $6, $6) "  # noqa: S608
            "ON CONFLICT (collection, partition_key, sort_key) DO NOTHING RETURNING created, updated"
        )
        self.replace_if = (
            f"UPDATE {t} SET attributes = $4::jsonb, etag = $5, updated = $6 "  # noqa: S608
            f"WHERE {_KEY} AND etag = $7 RETURNING created, updated"
        )
        self.delete = f"DELETE FROM {t} WHERE {_KEY} RETURNING 1"  # noqa: S608
        self.delete_if = f"DELETE FROM {t} WHERE {_KEY} AND etag = $4 RETURNING 1"  # noqa: S608
        self.get_many = (
            f"SELECT {_COLUMNS} FROM {t} WHERE (collection, partition_key, sort_key) IN "  # noqa: S608
            "(SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]))"
        )


class PostgresItemStore:
    """One tenant's items in one PostgreSQL schema, through a pool of its own."""

    def __init__(self, config: PostgresItemConfig) -> None:
        self._config = config
        self._sql = _Statements(config.schema)
        self._pool_: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    @property
    def capabilities(self) -> ItemCapabilities:
        return ItemCapabilities(
            transactions=True, cross_partition_transactions=True, max_transaction_ops=TRANSACTION_LIMIT
        )

    # -- plumbing ---------------------------------------------------------------------------

    async def _pool(self) -> asyncpg.Pool:
        if self._pool_ is None:
            async with self._lock:
                if self._pool_ is None:
                    cfg = self._config
                    self._pool_ = await asyncpg.create_pool(
                        dsn=cfg.dsn,
                        password=cfg.password.get_secret_value() if cfg.password else None,
                        min_size=cfg.pool_min_size,
                        max_size=cfg.pool_max_size,
                        timeout=cfg.connect_timeout_seconds,
                        command_timeout=cfg.command_timeout_seconds,
                        # Lets an operator tell the tenants' pools apart in pg_stat_activity.
                        server_settings={"application_name": f"makoto-items {cfg.schema}"[:63]},
                    )
        return self._pool_

    async def _run(self, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        try:
            pool = await self._pool()
            async with pool.acquire(timeout=self._config.connect_timeout_seconds) as conn:
                return await body(conn)
        except MakotoError:
            raise
        except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError) as exc:
            raise translate(exc, self._config.describe) from None

    async def close(self) -> None:
        async with self._lock:
            pool, self._pool_ = self._pool_, None
        if pool is not None:
            await pool.close()

    # -- provisioning -------------------------------------------------------------------------

    async def provision(self) -> None:
        async def body(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                # Concurrent CREATE ... IF NOT EXISTS can still collide in the catalog.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._config.schema)
                for statement in self._sql.create:
                    await conn.execute(statement)

        await self._run(body)

    async def deprovision(self) -> None:
        """Drop the platform's schema, or only the items table of a schema the binding names."""
        statement = (
            f"DROP SCHEMA IF EXISTS {self._sql.schema} CASCADE"
            if self._config.platform_schema
            else f"DROP TABLE IF EXISTS {self._sql.table}"
        )

        async def body(conn: asyncpg.Connection) -> None:
            await conn.execute(statement)

        await self._run(body)

    # -- single items ----------------------------------------------------------------------

    async def get(self, key: ItemKey) -> StoredItem:
        row = await self._run(lambda conn: conn.fetchrow(self._sql.get, *_key_args(key)))
        if row is None:
            raise NotFound("item not found", reason="ITEM_NOT_FOUND")
        return _stored(row)

    async def put(
        self,
        key: ItemKey,
        attributes: Attributes,
        *,
        must_not_exist: bool = False,
        expected_etag: str | None = None,
    ) -> StoredItem:
        document = _json(attributes)
        etag = new_etag()
        now = from_us(now_us())
        args = (*_key_args(key), document, etag, now)
        if must_not_exist:
            row = await self._run(lambda conn: conn.fetchrow(self._sql.insert, *args))
            if row is None:
                raise AlreadyExists("item already exists", reason="ITEM_EXISTS")
        elif expected_etag:
            row = await self._run(lambda conn: conn.fetchrow(self._sql.replace_if, *args, expected_etag))
            if row is None:
                raise Aborted("item etag does not match", reason="ETAG_MISMATCH")
        else:
            row = await self._run(lambda conn: conn.fetchrow(self._sql.upsert, *args))
        return self._written(key, document, etag, row["created"], row["updated"])

    @staticmethod
    def _written(key: ItemKey, document: str, etag: str, created: datetime, updated: datetime) -> StoredItem:
        return StoredItem(
            key=key,
            attributes=attributes_from_document(json.loads(document)),
            etag=etag,
            created=created,
            updated=updated,
        )

    async def delete(self, key: ItemKey, *, expected_etag: str | None = None) -> None:
        if expected_etag:
            done = await self._run(
                lambda conn: conn.fetchval(self._sql.delete_if, *_key_args(key), expected_etag)
            )
            if done is None:
                raise Aborted("item etag does not match", reason="ETAG_MISMATCH")
        else:
            done = await self._run(lambda conn: conn.fetchval(self._sql.delete, *_key_args(key)))
            if done is None:
                raise NotFound("item not found", reason="ITEM_NOT_FOUND")

    # -- query ------------------------------------------------------------------------------

    async def query(self, query: ItemQuery) -> ItemPage:
        scope = query_scope("postgres", query)
        bounds = SortBounds(query)
        page_size = page_size_of(query)
        start_after = decode_page_token(query.page_token, scope) if query.page_token else None
        if bounds.empty:
            return ItemPage(items=[], next_page_token="")
        where = ["collection = $1", "partition_key = $2"]
        args: list[Any] = [query.collection, _b(query.partition_key)]

        def arg(value: object) -> str:
            args.append(value)
            return f"${len(args)}"

        if bounds.eq is not None:
            where.append(f"sort_key = {arg(_b(bounds.eq))}")
        if bounds.prefix is not None:
            low = _b(bounds.prefix)
            where.append(f"sort_key >= {arg(low)}")
            high = prefix_upper_bound(low)
            if high is not None:
                where.append(f"sort_key < {arg(high)}")
        if bounds.start is not None:
            where.append(f"sort_key >= {arg(_b(bounds.start))}")
        if bounds.end is not None:
            where.append(f"sort_key <= {arg(_b(bounds.end))}")
        if start_after is not None:
            where.append(f"sort_key {'<' if query.descending else '>'} {arg(_b(start_after))}")
        order = "DESC" if query.descending else "ASC"
        # One extra row tells whether another page exists, so the last page carries no token.
        sql = (
            f"SELECT {_COLUMNS} FROM {self._sql.table} WHERE {' AND '.join(where)} "  # noqa: S608
            f"ORDER BY sort_key {order} LIMIT {arg(page_size + 1)}"
        )
        rows = await self._run(lambda conn: conn.fetch(sql, *args))
        items = [_stored(r) for r in rows[:page_size]]
        more = len(rows) > page_size
        token = encode_page_token(items[-1].key.sort_key, scope) if more else ""
        return ItemPage(items=items, next_page_token=token)

    async def scan(self, page_size: int = 500) -> AsyncIterator[StoredItem]:
        """Every item, in key order (keyset pages: no offset re-reads)."""
        after: tuple[str, bytes, bytes] | None = None
        while True:
            if after is None:
                sql = f"SELECT {_COLUMNS} FROM {self._sql.table} "  # noqa: S608 - fixed fragments
                args: list[Any] = []
            else:
                sql = (
                    f"SELECT {_COLUMNS} FROM {self._sql.table} "  # noqa: S608 - fixed fragments
                    "WHERE (collection, partition_key, sort_key) > ($1, $2, $3) "
                )
                args = list(after)
            sql += f"ORDER BY collection, partition_key, sort_key LIMIT {int(page_size)}"

            async def page(
                conn: asyncpg.Connection, sql: str = sql, args: list[Any] = args
            ) -> list[asyncpg.Record]:
                return list(await conn.fetch(sql, *args))

            rows = await self._run(page)
            for row in rows:
                yield _stored(row)
            if len(rows) < page_size:
                return
            last = rows[-1]
            after = (last["collection"], bytes(last["partition_key"]), bytes(last["sort_key"]))

    # -- batches ------------------------------------------------------------------------------

    async def _read_many(
        self, conn: asyncpg.Connection, keys: Sequence[ItemKey]
    ) -> dict[ItemKey, asyncpg.Record]:
        wanted = unique_keys(keys)
        rows = await conn.fetch(
            self._sql.get_many,
            [k.collection for k in wanted],
            [_b(k.partition_key) for k in wanted],
            [_b(k.sort_key) for k in wanted],
        )
        return {_stored_key(r): r for r in rows}

    async def batch_get(self, keys: Sequence[ItemKey]) -> list[StoredItem]:
        if not keys:
            return []
        found = await self._run(lambda conn: self._read_many(conn, keys))
        return [_stored(found[k]) for k in keys if k in found]

    async def batch_write(self, ops: Sequence[PutOp | DeleteOp]) -> list[StoredItem]:
        documents = {i: _json(op.attributes) for i, op in enumerate(ops) if isinstance(op, PutOp)}

        async def body(conn: asyncpg.Connection) -> list[StoredItem]:
            # One transaction is simply the cheapest way to apply many rows; the contract only
            # promises a non-atomic batch.
            async with conn.transaction():
                return await self._apply(conn, ops, documents, None)

        return await self._run(body)

    async def _apply(
        self,
        conn: asyncpg.Connection,
        ops: Sequence[TransactOp],
        documents: Mapping[int, str],
        present: Container[ItemKey] | None,
    ) -> list[StoredItem]:
        """Apply the puts and deletes in order inside the caller's transaction; with `present`,
        only keys in it are deleted (condition checks write nothing)."""
        stored = []
        now = from_us(now_us())
        for i, op in enumerate(ops):
            if isinstance(op, PutOp):
                etag = new_etag()
                row = await conn.fetchrow(self._sql.upsert, *_key_args(op.key), documents[i], etag, now)
                stored.append(self._written(op.key, documents[i], etag, row["created"], row["updated"]))
            elif isinstance(op, DeleteOp) and (present is None or op.key in present):
                await conn.execute(self._sql.delete, *_key_args(op.key))
        return stored

    # -- transactions -------------------------------------------------------------------------

    async def transact_write(self, ops: Sequence[TransactOp]) -> list[StoredItem]:
        check_transaction(ops, TRANSACTION_LIMIT)
        documents = {i: _json(op.attributes) for i, op in enumerate(ops) if isinstance(op, PutOp)}

        async def attempt(conn: asyncpg.Connection) -> list[StoredItem]:
            async with conn.transaction(isolation="serializable"):
                current = await self._read_many(conn, [op.key for op in ops])
                for i, op in enumerate(ops):
                    row = current.get(op.key)
                    check_against(i, op, row["etag"] if row is not None else None)
                return await self._apply(conn, ops, documents, current)

        async def body(conn: asyncpg.Connection) -> list[StoredItem]:
            for _ in range(_SERIALIZATION_ATTEMPTS - 1):
                try:
                    return await attempt(conn)
                except asyncpg.SerializationError:
                    await asyncio.sleep(0.005)
            return await attempt(conn)  # a last conflict becomes ABORTED (errors.py)

        return await self._run(body)


def _stored_key(row: asyncpg.Record) -> ItemKey:
    return ItemKey(row["collection"], bytes(row["partition_key"]).decode(), bytes(row["sort_key"]).decode())
