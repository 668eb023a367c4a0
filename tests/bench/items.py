"""Item operations: through StorageService (gRPC, direct to the storage port) and the same
operation made directly with each backend's SDK against the same server.

Both sides write the same logical item (six attributes, ~250 bytes) under sort keys
item-000000.., read them back by key, and query one partition by sort-key prefix for a page of
10 (both ask the backend for 11 rows: the adapters fetch one extra to know whether a next page
exists). Every answer is checked (found, right key, page of 10)."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any, Protocol

from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

COLLECTION = "bench"
PARTITION = "p0"
QUERY_PREFIX = "item-0"
PAGE = 10
PAYLOAD = "x" * 200


def sort_key(i: int) -> str:
    return f"item-{i:06d}"


def document(i: int) -> dict[str, Any]:
    """The item as a plain document (what the direct baselines store)."""
    return {
        "name": sort_key(i),
        "count": i,
        "price": "12.34",
        "active": True,
        "tags": ["a", "b"],
        "payload": PAYLOAD,
    }


def attributes(i: int) -> dict[str, items_pb2.AttributeValue]:
    """The same item as StorageService attributes."""
    av = items_pb2.AttributeValue
    return {
        "name": av(string_value=sort_key(i)),
        "count": av(int_value=i),
        "price": av(decimal_value="12.34"),
        "active": av(bool_value=True),
        "tags": av(list_value=items_pb2.AttributeList(values=[av(string_value="a"), av(string_value="b")])),
        "payload": av(string_value=PAYLOAD),
    }


class ItemOps(Protocol):
    async def put(self, i: int) -> None: ...
    async def get(self, i: int) -> None: ...
    async def query(self, i: int) -> None: ...


def _check_page(count: int) -> None:
    if count != PAGE:
        raise AssertionError(f"query returned {count} items, expected {PAGE}")


class ServiceItems:
    def __init__(
        self, stub: storage_service_pb2_grpc.StorageServiceStub, metadata: Any, tenant_id: str
    ) -> None:
        self._stub, self._md, self._tenant = stub, metadata, tenant_id

    async def put(self, i: int) -> None:
        item = items_pb2.Item(
            collection=COLLECTION, partition_key=PARTITION, sort_key=sort_key(i), attributes=attributes(i)
        )
        await self._stub.PutItem(
            items_pb2.PutItemRequest(tenant_id=self._tenant, item=item), metadata=self._md
        )

    async def get(self, i: int) -> None:
        item = await self._stub.GetItem(
            items_pb2.GetItemRequest(
                tenant_id=self._tenant, collection=COLLECTION, partition_key=PARTITION, sort_key=sort_key(i)
            ),
            metadata=self._md,
        )
        if item.attributes["count"].int_value != i:
            raise AssertionError(f"GetItem {sort_key(i)} returned another item")

    async def query(self, i: int) -> None:
        page = await self._stub.QueryItems(
            items_pb2.QueryItemsRequest(
                tenant_id=self._tenant,
                collection=COLLECTION,
                partition_key=PARTITION,
                sort_key_prefix=QUERY_PREFIX,
                page_size=PAGE,
            ),
            metadata=self._md,
        )
        _check_page(len(page.items))


# -- SQLite (aiosqlite; same schema and pragmas as the sqlite adapter) -----------------------

_SQL_TABLE = """
CREATE TABLE IF NOT EXISTS items (
    collection TEXT NOT NULL, partition_key BLOB NOT NULL, sort_key BLOB NOT NULL,
    attributes TEXT NOT NULL, etag TEXT NOT NULL, created_us INTEGER NOT NULL, updated_us INTEGER NOT NULL,
    PRIMARY KEY (collection, partition_key, sort_key)
) WITHOUT ROWID
"""


class DirectSqlite:
    def __init__(self, path: str) -> None:
        self._path = path
        self._db: Any = None

    async def open(self) -> None:
        import aiosqlite

        self._db = await aiosqlite.connect(self._path, isolation_level=None)
        await self._db.execute("PRAGMA journal_mode = WAL")
        await self._db.execute("PRAGMA synchronous = NORMAL")
        await self._db.execute(_SQL_TABLE)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()

    async def put(self, i: int) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                COLLECTION,
                PARTITION.encode(),
                sort_key(i).encode(),
                json.dumps(document(i)),
                uuid.uuid4().hex,
                i,
                i,
            ),
        )

    async def get(self, i: int) -> None:
        async with self._db.execute(
            "SELECT * FROM items WHERE collection = ? AND partition_key = ? AND sort_key = ?",
            (COLLECTION, PARTITION.encode(), sort_key(i).encode()),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None or json.loads(row[3])["count"] != i:
            raise AssertionError(f"sqlite get {sort_key(i)} failed")

    async def query(self, i: int) -> None:
        async with self._db.execute(
            "SELECT * FROM items WHERE collection = ? AND partition_key = ? "
            "AND sort_key >= ? AND sort_key < ? ORDER BY sort_key LIMIT ?",
            (COLLECTION, PARTITION.encode(), b"item-0", b"item-1", PAGE + 1),
        ) as cursor:
            rows = await cursor.fetchall()
        _check_page(len([json.loads(r[3]) for r in rows[:PAGE]]))


# -- PostgreSQL (asyncpg; same table shape and pool size as the postgres adapter) ------------


class DirectPostgres:
    def __init__(self, dsn: str, schema: str = "bench_direct", pool_max: int = 5) -> None:
        self._dsn, self._schema, self._pool_max = dsn, schema, pool_max
        self._pool: Any = None

    async def open(self) -> None:
        import asyncpg

        self._pool = await asyncpg.create_pool(dsn=self._dsn, min_size=0, max_size=self._pool_max)
        s = self._schema
        await self._pool.execute(f'CREATE SCHEMA IF NOT EXISTS "{s}"')
        await self._pool.execute(
            f'CREATE TABLE IF NOT EXISTS "{s}".items (collection text COLLATE "C" NOT NULL, '
            "partition_key bytea NOT NULL, sort_key bytea NOT NULL, attributes jsonb NOT NULL, "
            "etag text NOT NULL, created timestamptz NOT NULL, updated timestamptz NOT NULL, "
            "PRIMARY KEY (collection, partition_key, sort_key))"
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def put(self, i: int) -> None:
        await self._pool.fetchrow(
            f'INSERT INTO "{self._schema}".items VALUES ($1, $2, $3, $4::jsonb, $5, now(), now()) '
            "ON CONFLICT (collection, partition_key, sort_key) DO UPDATE SET "
            "attributes = EXCLUDED.attributes, etag = EXCLUDED.etag, updated = EXCLUDED.updated "
            "RETURNING created, updated",
            COLLECTION,
            PARTITION.encode(),
            sort_key(i).encode(),
            json.dumps(document(i)),
            uuid.uuid4().hex,
        )

    async def get(self, i: int) -> None:
        row = await self._pool.fetchrow(
            f'SELECT * FROM "{self._schema}".items '
            "WHERE collection = $1 AND partition_key = $2 AND sort_key = $3",
            COLLECTION,
            PARTITION.encode(),
            sort_key(i).encode(),
        )
        if row is None or json.loads(row["attributes"])["count"] != i:
            raise AssertionError(f"postgres get {sort_key(i)} failed")

    async def query(self, i: int) -> None:
        rows = await self._pool.fetch(
            f'SELECT * FROM "{self._schema}".items WHERE collection = $1 AND partition_key = $2 '
            "AND sort_key >= $3 AND sort_key < $4 ORDER BY sort_key LIMIT $5",
            COLLECTION,
            PARTITION.encode(),
            b"item-0",
            b"item-1",
            PAGE + 1,
        )
        _check_page(len([json.loads(r["attributes"]) for r in rows[:PAGE]]))


# -- DynamoDB (aioboto3, the same moto server) ----------------------------------------------


def _ddb(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, list):
        return {"L": [_ddb(v) for v in value]}
    return {"S": str(value)}


class DirectDynamo:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, table: str = "bench-direct") -> None:
        self._endpoint, self._key, self._secret, self._table = endpoint, access_key, secret_key, table
        self._client: Any = None
        self._stack = contextlib.AsyncExitStack()

    async def open(self) -> None:
        import aioboto3
        from botocore.config import Config

        self._client = await self._stack.enter_async_context(
            aioboto3.Session().client(
                "dynamodb",
                endpoint_url=self._endpoint,
                region_name="us-east-1",
                aws_access_key_id=self._key,
                aws_secret_access_key=self._secret,
                config=Config(max_pool_connections=32),
            )
        )
        await self._client.create_table(
            TableName=self._table,
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )

    async def close(self) -> None:
        await self._stack.aclose()

    async def put(self, i: int) -> None:
        item = {"pk": {"S": f"{COLLECTION}#{PARTITION}"}, "sk": {"S": sort_key(i)}}
        item.update({k: _ddb(v) for k, v in document(i).items()})
        await self._client.put_item(TableName=self._table, Item=item)

    async def get(self, i: int) -> None:
        response = await self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": f"{COLLECTION}#{PARTITION}"}, "sk": {"S": sort_key(i)}},
            ConsistentRead=True,
        )
        if response.get("Item", {}).get("count", {}).get("N") != str(i):
            raise AssertionError(f"dynamodb get {sort_key(i)} failed")

    async def query(self, i: int) -> None:
        response = await self._client.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={
                ":pk": {"S": f"{COLLECTION}#{PARTITION}"},
                ":prefix": {"S": QUERY_PREFIX},
            },
            Limit=PAGE + 1,
            ConsistentRead=True,
        )
        _check_page(len(response.get("Items", [])[:PAGE]))


# -- Cosmos DB (azure-cosmos aio, the same cosmosdb-server) ---------------------------------


class DirectCosmos:
    def __init__(self, endpoint: str, key: str, database: str = "bench-direct") -> None:
        self._endpoint, self._key, self._database = endpoint, key, database
        self._client: Any = None
        self._container: Any = None

    async def open(self) -> None:
        from azure.cosmos import PartitionKey
        from azure.cosmos.aio import CosmosClient

        # connection_verify=False: the emulator's self-signed certificate, as the binding says.
        self._client = CosmosClient(self._endpoint, credential=self._key, connection_verify=False)
        database = await self._client.create_database_if_not_exists(id=self._database)
        self._container = await database.create_container_if_not_exists(
            id="items", partition_key=PartitionKey(path="/pk", kind="Hash", version=2)
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def put(self, i: int) -> None:
        doc = {"id": sort_key(i), "pk": f"{COLLECTION}#{PARTITION}", "so": sort_key(i), "a": document(i)}
        await self._container.upsert_item(doc)

    async def get(self, i: int) -> None:
        doc = await self._container.read_item(item=sort_key(i), partition_key=f"{COLLECTION}#{PARTITION}")
        if doc["a"]["count"] != i:
            raise AssertionError(f"cosmos get {sort_key(i)} failed")

    async def query(self, i: int) -> None:
        pk = f"{COLLECTION}#{PARTITION}"
        docs = [
            d
            async for d in self._container.query_items(
                "SELECT TOP @n * FROM c WHERE c.pk = @pk AND STARTSWITH(c.so, @prefix) ORDER BY c.so ASC",
                parameters=[
                    {"name": "@n", "value": PAGE + 1},
                    {"name": "@pk", "value": pk},
                    {"name": "@prefix", "value": QUERY_PREFIX},
                ],
                partition_key=pk,
            )
        ]
        _check_page(len(docs[:PAGE]))
