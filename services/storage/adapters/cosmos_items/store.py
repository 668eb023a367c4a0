"""Item store on Cosmos DB (azure-cosmos, async): database `makoto-{tenant_id}`, one container
(partition key path /pk) holding every collection.

Document layout:
  id  = sha256 hex of the sort key (Cosmos ids are limited to 255 chars and refuse / \\ ? #)
  pk  = "<collection>#<partition_key>"    (the partition key value; large keys, version 2)
  s   = the sort key as given
  so  = lowercase hex of the sort key's UTF-8 bytes: ORDER BY / STARTSWITH / ranges run on it,
        so order is byte-wise whatever collation the service or an emulator applies to strings
        (the emulator compares UTF-16 code units, which puts U+FFFD after U+1F600)
  a   = attributes, tagged JSON (services/storage/item_codec.py: numbers never become doubles)
  ct / ut = created / updated, epoch microseconds
The etag is Cosmos's own _etag; conditions are If-Match (MatchConditions.IfNotModified).
Every query filters on c.pk in SQL as well as passing partition_key.
Transactions are transactional batches, so they are limited to one partition
(capabilities.cross_partition_transactions is False).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Sequence
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, HttpResponseError
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient
from azure.cosmos.exceptions import CosmosBatchOperationError

from services.common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from services.storage.adapters.cosmos_items.config import CosmosItemConfig
from services.storage.adapters.cosmos_items.errors import retry_after_seconds, status_of, translate
from services.storage.item_codec import (
    SortBounds,
    check_against,
    check_transaction,
    condition_failed,
    from_us,
    now_us,
    page_size_of,
    partition_value,
    query_scope,
    split_partition_value,
    unique_keys,
)
from services.storage.paging import decode_page_token, encode_page_token
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
from services.storage.tagged_json import (
    attributes_from_document,
    attributes_to_document,
)

T = TypeVar("T")

BATCH_LIMIT = 100  # operations per transactional batch
_PUT_ATTEMPTS = 8  # create / patch races with concurrent deletes before giving up
_CONCURRENCY = 16  # parallel point operations of one batch_get / batch_write
_OWNER_MISSING = 1003  # x-ms-substatus of a 404 whose database or container does not exist


def doc_id(sort_key: str) -> str:
    return hashlib.sha256(sort_key.encode("utf-8")).hexdigest()


def sort_order(sort_key: str) -> str:
    return sort_key.encode("utf-8").hex()


def _pk(key: ItemKey) -> str:
    return partition_value(key.collection, key.partition_key)


def _document(key: ItemKey, attributes: dict[str, Any], created: int, updated: int) -> dict[str, Any]:
    return {
        "id": doc_id(key.sort_key),
        "pk": _pk(key),
        "s": key.sort_key,
        "so": sort_order(key.sort_key),
        "a": attributes,
        "ct": created,
        "ut": updated,
    }


def _stored(doc: dict[str, Any]) -> StoredItem:
    collection, partition_key = split_partition_value(doc["pk"])
    return StoredItem(
        key=ItemKey(collection, partition_key, doc["s"]),
        attributes=attributes_from_document(doc["a"]),
        etag=str(doc["_etag"]),
        created=from_us(int(doc["ct"])),
        updated=from_us(int(doc["ut"])),
    )


# The architecture document's consistency for tenant items: Session (read-your-writes within the
# client's session, the token carried on every request), set explicitly so an account whose
# default is weaker (Eventual, Consistent Prefix) or stronger does not change the adapter's answers.
CONSISTENCY_LEVEL = "Session"


def open_client(cfg: CosmosItemConfig) -> CosmosClient:
    """The adapter's client for a binding (also what the tests inspect)."""
    return CosmosClient(
        cfg.endpoint,
        credential=cfg.key.get_secret_value(),
        consistency_level=CONSISTENCY_LEVEL,
        connection_verify=cfg.connection_verify,
        enable_endpoint_discovery=cfg.endpoint_discovery,
        retry_throttle_total=cfg.throttle_retries,
        retry_throttle_backoff_max=cfg.throttle_max_wait_seconds,
        # Connection failures surface at once as UNAVAILABLE; the caller retries.
        retry_total=0,
        retry_connect=0,
        retry_read=0,
        connection_timeout=cfg.timeout_seconds,
    )


class CosmosItemStore:
    """One tenant's items in one Cosmos DB container."""

    def __init__(self, config: CosmosItemConfig) -> None:
        self._config = config
        self._client: CosmosClient | None = None
        self._lock = asyncio.Lock()

    @property
    def capabilities(self) -> ItemCapabilities:
        return ItemCapabilities(
            transactions=True, cross_partition_transactions=False, max_transaction_ops=BATCH_LIMIT
        )

    # -- plumbing ---------------------------------------------------------------------------

    async def _cosmos(self) -> CosmosClient:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = open_client(self._config)
        return self._client

    async def _container(self) -> ContainerProxy:
        client = await self._cosmos()
        return client.get_database_client(self._config.database).get_container_client(self._config.container)

    async def _guard(self, awaitable: Awaitable[T], expect: frozenset[int] = frozenset()) -> T:
        """Await a Cosmos call; statuses in expect reach the caller as they are, the rest are
        translated (errors.py)."""
        try:
            return await awaitable
        except CosmosBatchOperationError:
            raise  # per-operation results: the transaction maps them (_batch_error)
        except HttpResponseError as exc:
            # 404 with sub-status 1003: the database or container is missing, not the item.
            owner_missing = status_of(exc) == 404 and getattr(exc, "sub_status", None) == _OWNER_MISSING
            if status_of(exc) in expect and not owner_missing:
                raise
            raise translate(exc, self._config.describe) from None
        except (AzureError, OSError) as exc:
            raise translate(exc, self._config.describe) from None

    async def _query(self, sql: str, parameters: list[dict[str, Any]], pk: str) -> list[dict[str, Any]]:
        container = await self._container()

        async def run() -> list[dict[str, Any]]:
            return [doc async for doc in container.query_items(sql, parameters=parameters, partition_key=pk)]

        return await self._guard(run())

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            await client.close()

    # -- provisioning -------------------------------------------------------------------------

    async def provision(self) -> None:
        """Create the database and container if missing (idempotent) and check the container's
        partition key path."""
        client = await self._cosmos()
        cfg = self._config
        database = await self._guard(client.create_database_if_not_exists(id=cfg.database))
        container = await self._guard(
            database.create_container_if_not_exists(
                id=cfg.container,
                partition_key=PartitionKey(path="/pk", kind="Hash", version=2),
                offer_throughput=cfg.throughput,
            )
        )
        properties = await self._guard(container.read())
        paths = properties.get("partitionKey", {}).get("paths", [])
        if paths != ["/pk"]:
            raise FailedPrecondition(
                f"{cfg.describe}: the container exists with partition key {paths}, not ['/pk']",
                reason="BINDING_INVALID",
                metadata={"binding": "item_store", "backend": "cosmos"},
            )

    async def database_exists(self) -> bool:
        """Whether the binding's database exists (a query: the emulator answers reads of missing
        resources with 500)."""
        client = await self._cosmos()
        query = client.query_databases(
            "SELECT * FROM r WHERE r.id = @id", parameters=[{"name": "@id", "value": self._config.database}]
        )
        return bool(await self._guard(_collect(query)))

    async def deprovision(self) -> None:
        """Drop the platform's database (or, for a database the binding names, only the
        container); idempotent."""
        client = await self._cosmos()
        cfg = self._config
        try:
            if cfg.platform_database:
                await self._guard(client.delete_database(cfg.database), frozenset({404}))
            else:
                database = client.get_database_client(cfg.database)
                await self._guard(database.delete_container(cfg.container), frozenset({404}))
        except HttpResponseError:
            pass  # already gone

    # -- single items ----------------------------------------------------------------------

    async def get(self, key: ItemKey) -> StoredItem:
        container = await self._container()
        try:
            doc = await self._guard(
                container.read_item(item=doc_id(key.sort_key), partition_key=_pk(key)), frozenset({404})
            )
        except HttpResponseError:
            raise NotFound("item not found", reason="ITEM_NOT_FOUND") from None
        return _stored(doc)

    async def put(
        self,
        key: ItemKey,
        attributes: Attributes,
        *,
        must_not_exist: bool = False,
        expected_etag: str | None = None,
    ) -> StoredItem:
        encoded = attributes_to_document(attributes)
        container = await self._container()
        if must_not_exist:
            now = now_us()
            try:
                created = await self._guard(
                    container.create_item(_document(key, encoded, now, now)), frozenset({409})
                )
            except HttpResponseError:
                raise AlreadyExists("item already exists", reason="ITEM_EXISTS") from None
            return _stored(created)
        if expected_etag:
            try:
                doc = await self._patch(container, key, encoded, expected_etag)
            except HttpResponseError:
                # 412: another etag; 404: no such item. Both are a mismatch to the contract.
                raise Aborted("item etag does not match", reason="ETAG_MISMATCH") from None
            return _stored(doc)
        return _stored(await self._upsert(container, key, encoded))

    async def _patch(
        self, container: ContainerProxy, key: ItemKey, encoded: dict[str, Any], etag: str | None
    ) -> dict[str, Any]:
        """Replace the attributes of an existing item, keeping ct (a patch, so no read first).
        404 / 412 reach the caller."""
        operations: list[dict[str, Any]] = [
            {"op": "set", "path": "/a", "value": encoded},
            {"op": "set", "path": "/ut", "value": now_us()},
        ]
        conditions: dict[str, Any] = (
            {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        )
        doc: dict[str, Any] = await self._guard(
            container.patch_item(
                item=doc_id(key.sort_key), partition_key=_pk(key), patch_operations=operations, **conditions
            ),
            frozenset({404, 412}),
        )
        return doc

    async def _upsert(
        self, container: ContainerProxy, key: ItemKey, encoded: dict[str, Any]
    ) -> dict[str, Any]:
        """Unconditional put that keeps `created`: create, or patch the existing item."""
        for _ in range(_PUT_ATTEMPTS):
            now = now_us()
            try:
                created: dict[str, Any] = await self._guard(
                    container.create_item(_document(key, encoded, now, now)), frozenset({409})
                )
                return created
            except HttpResponseError:
                pass  # exists: patch it
            try:
                return await self._patch(container, key, encoded, None)
            except HttpResponseError:
                pass  # deleted in between: create again
        raise Aborted("the item kept changing under concurrent writes", reason="CONCURRENT_WRITES")

    async def delete(self, key: ItemKey, *, expected_etag: str | None = None) -> None:
        container = await self._container()
        conditions: dict[str, Any] = (
            {"etag": expected_etag, "match_condition": MatchConditions.IfNotModified} if expected_etag else {}
        )
        try:
            await self._guard(
                container.delete_item(item=doc_id(key.sort_key), partition_key=_pk(key), **conditions),
                frozenset({404, 412}),
            )
        except HttpResponseError as exc:
            if expected_etag:
                raise Aborted("item etag does not match", reason="ETAG_MISMATCH") from None
            if status_of(exc) == 404:
                raise NotFound("item not found", reason="ITEM_NOT_FOUND") from None
            raise

    # -- query ------------------------------------------------------------------------------

    async def query(self, query: ItemQuery) -> ItemPage:
        scope = query_scope("cosmos", query)
        bounds = SortBounds(query)
        page_size = page_size_of(query)
        start_after = decode_page_token(query.page_token, scope) if query.page_token else None
        if bounds.empty:
            return ItemPage(items=[], next_page_token="")
        pk = partition_value(query.collection, query.partition_key)
        # One extra item tells whether another page exists, so the last page carries no token.
        where = ["c.pk = @pk"]
        parameters: list[dict[str, Any]] = [
            {"name": "@n", "value": page_size + 1},
            {"name": "@pk", "value": pk},
        ]
        # (bound, parameter, condition): each bound given narrows the scan by one condition.
        conditions = (
            (bounds.eq, "@eq", "c.so = @eq"),
            (bounds.prefix, "@prefix", "STARTSWITH(c.so, @prefix)"),
            (bounds.start, "@start", "c.so >= @start"),
            (bounds.end, "@end", "c.so <= @end"),
            (start_after, "@after", "c.so < @after" if query.descending else "c.so > @after"),
        )
        for value, name, condition in conditions:
            if value is not None:
                where.append(condition)
                parameters.append({"name": name, "value": sort_order(value)})
        order = "DESC" if query.descending else "ASC"
        sql = f"SELECT TOP @n * FROM c WHERE {' AND '.join(where)} ORDER BY c.so {order}"  # noqa: S608
        docs = await self._query(sql, parameters, pk)
        items = [_stored(d) for d in docs[:page_size]]
        more = len(docs) > page_size
        token = encode_page_token(items[-1].key.sort_key, scope) if more else ""
        return ItemPage(items=items, next_page_token=token)

    async def scan(self, page_size: int = 500) -> AsyncIterator[StoredItem]:
        """Every item of the container (a cross-partition query, read page by page)."""
        container = await self._container()
        pages = container.query_items("SELECT * FROM c", max_item_count=page_size).by_page()
        while True:
            try:
                page = await self._guard(anext(pages))
            except StopAsyncIteration:
                return
            docs = await self._guard(_collect(page))
            for doc in docs:
                yield _stored(doc)

    # -- batches ------------------------------------------------------------------------------

    async def _read_partition(self, pk: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Current documents of one partition by id (a query: a missing id is simply absent)."""
        docs = await self._query(
            "SELECT * FROM c WHERE c.pk = @pk AND ARRAY_CONTAINS(@ids, c.id)",
            [{"name": "@pk", "value": pk}, {"name": "@ids", "value": list(ids)}],
            pk,
        )
        return {d["id"]: d for d in docs}

    async def batch_get(self, keys: Sequence[ItemKey]) -> list[StoredItem]:
        by_partition: dict[str, list[str]] = {}
        for key in unique_keys(keys):
            by_partition.setdefault(_pk(key), []).append(doc_id(key.sort_key))
        limit = asyncio.Semaphore(_CONCURRENCY)

        async def read(pk: str, ids: list[str]) -> tuple[str, dict[str, dict[str, Any]]]:
            async with limit:
                return pk, await self._read_partition(pk, ids)

        found = dict(await asyncio.gather(*(read(pk, ids) for pk, ids in by_partition.items())))
        out = []
        for key in keys:
            doc = found[_pk(key)].get(doc_id(key.sort_key))
            if doc is not None:
                out.append(_stored(doc))
        return out

    async def batch_write(self, ops: Sequence[PutOp | DeleteOp]) -> list[StoredItem]:
        encoded = {
            i: attributes_to_document(op.attributes) for i, op in enumerate(ops) if isinstance(op, PutOp)
        }
        container = await self._container()
        # Ops on one key run in request order; different keys run side by side.
        by_key: dict[ItemKey, list[int]] = {}
        for i, op in enumerate(ops):
            by_key.setdefault(op.key, []).append(i)
        results: dict[int, StoredItem] = {}
        limit = asyncio.Semaphore(_CONCURRENCY)

        async def run(indexes: list[int]) -> None:
            async with limit:
                for i in indexes:
                    op = ops[i]
                    if isinstance(op, PutOp):
                        results[i] = _stored(await self._upsert(container, op.key, encoded[i]))
                    else:
                        await self._delete_if_present(container, op.key)

        await asyncio.gather(*(run(indexes) for indexes in by_key.values()))
        return [results[i] for i in sorted(results)]

    async def _delete_if_present(self, container: ContainerProxy, key: ItemKey) -> None:
        try:
            await self._guard(
                container.delete_item(item=doc_id(key.sort_key), partition_key=_pk(key)), frozenset({404})
            )
        except HttpResponseError:
            pass  # a batch delete of a missing item is not an error

    # -- transactions -------------------------------------------------------------------------

    async def transact_write(self, ops: Sequence[TransactOp]) -> list[StoredItem]:
        check_transaction(ops, BATCH_LIMIT)
        partitions = {_pk(op.key) for op in ops}
        if len(partitions) > 1:
            raise FailedPrecondition(
                "Cosmos DB transactions are limited to one partition: every operation must share "
                "collection and partition key",
                reason="CAPABILITY_UNSUPPORTED",
                metadata={"capability": "cross_partition_transactions", "backend": "cosmos"},
            )
        (pk,) = partitions
        # Read the current items first: conditions fail fast with the right operation index,
        # `created` survives overwrites, and every batch operation is pinned with If-Match to
        # what was read, so the batch itself aborts if anything changed in between.
        current = await self._read_partition(pk, [doc_id(op.key.sort_key) for op in ops])
        for i, op in enumerate(ops):
            doc = current.get(doc_id(op.key.sort_key))
            check_against(i, op, str(doc["_etag"]) if doc is not None else None)
        batch: list[tuple[Any, ...]] = []
        origin: list[int] = []  # batch operation -> transaction operation
        puts: list[int] = []  # batch operations whose result is a stored item
        now = now_us()
        for i, op in enumerate(ops):
            item_id = doc_id(op.key.sort_key)
            doc = current.get(item_id)
            pinned = {"if_match_etag": doc["_etag"]} if doc is not None else {}
            if isinstance(op, PutOp):
                created = int(doc["ct"]) if doc is not None else now
                body = _document(op.key, attributes_to_document(op.attributes), created, now)
                puts.append(len(batch))
                batch.append(("replace", (item_id, body), pinned) if doc is not None else ("create", (body,)))
                origin.append(i)
            elif isinstance(op, DeleteOp):
                if doc is not None:  # deleting a missing item is a no-op, as on every backend
                    batch.append(("delete", (item_id,), pinned))
                    origin.append(i)
            elif isinstance(op, ConditionCheckOp):
                if op.must_not_exist:
                    # No batch operation asserts absence; creating and deleting a placeholder
                    # does, atomically (the create fails with 409 if the item appeared).
                    batch.append(("create", ({"id": item_id, "pk": pk},)))
                    batch.append(("delete", (item_id,)))
                    origin.extend((i, i))
                else:
                    batch.append(("read", (item_id,), pinned))
                    origin.append(i)
        if not batch:
            return []
        container = await self._container()
        try:
            results = await self._guard(
                container.execute_item_batch(batch, partition_key=pk), frozenset({409, 412})
            )
        except CosmosBatchOperationError as exc:
            raise _batch_error(exc, origin) from None
        except HttpResponseError:
            # A whole-batch 409 / 412 without per-operation results: a conflict all the same.
            raise Aborted(
                "transaction cancelled: an item changed concurrently", reason="TRANSACTION_CONFLICT"
            ) from None
        return [_stored(results[b]["resourceBody"]) for b in puts]


async def _collect(items: AsyncIterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item async for item in items]


def _batch_error(exc: CosmosBatchOperationError, origin: Sequence[int]) -> Exception:
    index = exc.error_index if isinstance(exc.error_index, int) else 0
    status = 0
    if exc.operation_responses and 0 <= index < len(exc.operation_responses):
        status = int(exc.operation_responses[index].get("statusCode", 0) or 0)
    op_index = origin[index] if 0 <= index < len(origin) else 0
    if status == 429:
        return ResourceExhausted(
            "Cosmos DB throttled the transaction",
            retry_after_seconds=retry_after_seconds(exc),
            reason="BACKEND_THROTTLED",
        )
    if status == 413:
        return InvalidArgument(
            "item too large for Cosmos DB",
            field_violations=[(f"writes[{op_index}]", "larger than Cosmos DB allows")],
            reason="ITEM_TOO_LARGE",
        )
    if status == 400:
        return InvalidArgument(
            f"Cosmos DB refused operation {op_index} of the transaction",
            field_violations=[(f"writes[{op_index}]", "refused by Cosmos DB")],
        )
    # 404 / 409 / 412: the item changed after it was read; the batch applied nothing.
    return condition_failed(op_index, "item changed concurrently", reason="TRANSACTION_CONFLICT")
