"""Item store on DynamoDB (aioboto3): one table per tenant holds every collection.

Key layout and attribute encoding: codec.py. Writes are UpdateItem so `ct` (created) survives
overwrites through if_not_exists; conditions are condition expressions on the etag attribute
`e`, so DynamoDB itself checks them. Reads are strongly consistent (the contract promises
read-after-write). Pages resume after the last sort key returned (ExclusiveStartKey), stable
while other items change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError

from services.common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.storage.adapters.dynamodb_items import codec
from services.storage.adapters.dynamodb_items.config import DynamoDbItemConfig
from services.storage.adapters.dynamodb_items.errors import (
    THROTTLE_CODES,
    backoff_seconds,
    call,
    error_code,
    exhausted,
)
from services.storage.item_codec import (
    SortBounds,
    check_transaction,
    condition_failed,
    from_us,
    new_etag,
    now_us,
    page_size_of,
    partition_value,
    query_scope,
    unique_keys,
)
from services.storage.paging import decode_page_token, encode_page_token
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

T = TypeVar("T")

BATCH_GET_LIMIT = 100  # keys per BatchGetItem
BATCH_WRITE_LIMIT = 25  # requests per BatchWriteItem
TRANSACTION_LIMIT = 100  # actions per TransactWriteItems
TRANSACTION_BYTES = 4 * 1024 * 1024  # aggregate size per TransactWriteItems
_TABLE_WAIT_SECONDS = 120.0  # CreateTable / DeleteTable until ACTIVE / gone

# Names in expressions go through placeholders: short attribute names collide with DynamoDB's
# reserved words otherwise.
_NAMES = {"#pk": codec.PK, "#a": codec.ATTRS, "#e": codec.ETAG, "#ct": codec.CREATED, "#ut": codec.UPDATED}
_WRITE = "SET #a = :a, #e = :e, #ut = :now, #ct = if_not_exists(#ct, :now)"
_WRITE_NAMES = ("#a", "#e", "#ut", "#ct")
_CCF = frozenset({"ConditionalCheckFailedException"})


def _names(*placeholders: str) -> dict[str, str]:
    # DynamoDB refuses placeholders an expression does not use, so each request names its own.
    return {p: _NAMES[p] for p in dict.fromkeys(placeholders)}


_session: aioboto3.Session | None = None


def _shared_session() -> aioboto3.Session:
    """One session for every tenant's client: it caches the service model, so building a
    tenant's client takes milliseconds; credentials are given per client, never stored here."""
    global _session
    if _session is None:
        _session = aioboto3.Session()
    return _session


def _stored(key: ItemKey, attrs: Attributes, etag: str, created: int, updated: int) -> StoredItem:
    return StoredItem(
        key=key, attributes=attrs, etag=etag, created=from_us(created), updated=from_us(updated)
    )


def _from_wire(item: Mapping[str, Any]) -> StoredItem:
    return StoredItem(
        key=codec.item_key_of(item),
        attributes=codec.decode_map(item[codec.ATTRS]["M"]),
        etag=item[codec.ETAG]["S"],
        created=from_us(int(item[codec.CREATED]["N"])),
        updated=from_us(int(item[codec.UPDATED]["N"])),
    )


class _Write:
    """One put prepared for the wire: encoded once, size-checked before anything is sent."""

    def __init__(self, key: ItemKey, attributes: Attributes, field: str) -> None:
        self.key = key
        self.encoded = codec.encode_map(attributes, f"{field}.attributes")
        self.attributes = codec.decode_map(self.encoded)  # what a later read returns
        self.etag = new_etag()
        self.now = now_us()
        self.size = codec.check_item_size(self.full_item(self.now), field)

    def values(self) -> dict[str, Any]:
        return {":a": {"M": self.encoded}, ":e": {"S": self.etag}, ":now": {"N": str(self.now)}}

    def full_item(self, created: int) -> dict[str, Any]:
        return {
            **codec.key_of(self.key),
            codec.ATTRS: {"M": self.encoded},
            codec.ETAG: {"S": self.etag},
            codec.CREATED: {"N": str(created)},
            codec.UPDATED: {"N": str(self.now)},
        }

    def stored(self, created: int) -> StoredItem:
        return _stored(self.key, self.attributes, self.etag, created, self.now)


class DynamoDbItemStore:
    """One tenant's items in one DynamoDB table."""

    def __init__(self, config: DynamoDbItemConfig) -> None:
        self._config = config
        self._table = config.table
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    @property
    def capabilities(self) -> ItemCapabilities:
        return ItemCapabilities(
            transactions=True, cross_partition_transactions=True, max_transaction_ops=TRANSACTION_LIMIT
        )

    # -- plumbing ---------------------------------------------------------------------------

    async def _dynamodb(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    stack = contextlib.AsyncExitStack()
                    botocore_config = Config(
                        # Retries happen in errors.call, where throttling gets backoff + jitter.
                        retries={"total_max_attempts": 1, "mode": "standard"},
                        connect_timeout=self._config.connect_timeout_seconds,
                        read_timeout=self._config.read_timeout_seconds,
                        max_pool_connections=32,
                    )
                    cfg = self._config
                    self._client = await stack.enter_async_context(
                        _shared_session().client(
                            "dynamodb",
                            endpoint_url=cfg.endpoint_url,
                            region_name=cfg.region,
                            # None falls back to the default AWS credential chain.
                            aws_access_key_id=cfg.access_key_id,
                            aws_secret_access_key=(
                                cfg.secret_access_key.get_secret_value() if cfg.secret_access_key else None
                            ),
                            aws_session_token=cfg.session_token.get_secret_value()
                            if cfg.session_token
                            else None,
                            config=botocore_config,
                        )
                    )
                    self._stack = stack
        return self._client

    async def _call(self, operation: str, passthrough: frozenset[str] = frozenset(), **kwargs: Any) -> Any:
        client = await self._dynamodb()
        method: Callable[..., Awaitable[Any]] = getattr(client, operation)
        return await call(
            lambda: method(**kwargs),
            policy=self._config.retry,
            binding=self._config.describe,
            table=self._table,
            what=operation,
            passthrough=passthrough,
        )

    async def close(self) -> None:
        async with self._lock:
            stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # -- provisioning -------------------------------------------------------------------------

    async def provision(self) -> None:
        """Create the tenant's table (on-demand capacity) if missing and wait until ACTIVE."""
        description = await self._describe()
        if description is None:
            try:
                await self._call(
                    "create_table",
                    frozenset({"ResourceInUseException"}),
                    TableName=self._table,
                    BillingMode="PAY_PER_REQUEST",
                    AttributeDefinitions=[
                        {"AttributeName": codec.PK, "AttributeType": "S"},
                        {"AttributeName": codec.SK, "AttributeType": "S"},
                    ],
                    KeySchema=[
                        {"AttributeName": codec.PK, "KeyType": "HASH"},
                        {"AttributeName": codec.SK, "KeyType": "RANGE"},
                    ],
                )
            except ClientError:
                pass  # created concurrently: fine, wait for it below
        else:
            keys = {k["AttributeName"]: k["KeyType"] for k in description.get("KeySchema", [])}
            if keys != {codec.PK: "HASH", codec.SK: "RANGE"}:
                raise FailedPrecondition(
                    f"{self._config.describe}: the table exists with another key schema",
                    reason="BINDING_INVALID",
                    metadata={"binding": "item_store", "backend": "dynamodb"},
                )
        await self._wait_for(lambda d: d is not None and d.get("TableStatus") == "ACTIVE")

    async def deprovision(self) -> None:
        """Delete the tenant's table (and so every item); idempotent."""
        for attempt in range(60):
            try:
                await self._call(
                    "delete_table",
                    frozenset({"ResourceNotFoundException", "ResourceInUseException"}),
                    TableName=self._table,
                )
                break
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return
                await asyncio.sleep(min(1.0, 0.1 * (attempt + 1)))  # still being created
        await self._wait_for(lambda d: d is None)

    async def _describe(self) -> dict[str, Any] | None:
        try:
            response = await self._call(
                "describe_table", frozenset({"ResourceNotFoundException"}), TableName=self._table
            )
        except ClientError:
            return None
        return response["Table"]  # type: ignore[no-any-return]

    async def _wait_for(self, done: Callable[[dict[str, Any] | None], bool]) -> None:
        delay = 0.05
        try:
            async with asyncio.timeout(_TABLE_WAIT_SECONDS):
                while not done(await self._describe()):
                    await asyncio.sleep(delay)
                    delay = min(1.0, delay * 2)
        except TimeoutError:
            raise Unavailable(
                f"{self._config.describe}: the table did not settle within {_TABLE_WAIT_SECONDS:.0f} s",
                metadata={"binding": "item_store", "backend": "dynamodb"},
            ) from None

    # -- single items ----------------------------------------------------------------------

    async def get(self, key: ItemKey) -> StoredItem:
        response = await self._call(
            "get_item", TableName=self._table, Key=codec.key_of(key), ConsistentRead=True
        )
        if "Item" not in response:
            raise NotFound("item not found", reason="ITEM_NOT_FOUND")
        return _from_wire(response["Item"])

    async def put(
        self,
        key: ItemKey,
        attributes: Attributes,
        *,
        must_not_exist: bool = False,
        expected_etag: str | None = None,
    ) -> StoredItem:
        write = _Write(key, attributes, "item")
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": codec.key_of(key),
            "UpdateExpression": _WRITE,
            "ExpressionAttributeValues": write.values(),
            # ALL_NEW brings back ct, which if_not_exists kept from the first write (UPDATED_NEW
            # would do on DynamoDB, but emulators leave out attributes whose value stayed).
            "ReturnValues": "ALL_NEW",
        }
        names = list(_WRITE_NAMES)
        if must_not_exist:
            request["ConditionExpression"] = "attribute_not_exists(#pk)"
            names.append("#pk")
        elif expected_etag:
            request["ConditionExpression"] = "#e = :expected"
            request["ExpressionAttributeValues"][":expected"] = {"S": expected_etag}
        request["ExpressionAttributeNames"] = _names(*names)
        try:
            response = await self._call("update_item", _CCF, **request)
        except ClientError:
            if must_not_exist:
                raise AlreadyExists("item already exists", reason="ITEM_EXISTS") from None
            raise Aborted("item etag does not match", reason="ETAG_MISMATCH") from None
        created = int(response.get("Attributes", {}).get(codec.CREATED, {}).get("N", write.now))
        return write.stored(created)

    async def delete(self, key: ItemKey, *, expected_etag: str | None = None) -> None:
        request: dict[str, Any] = {"TableName": self._table, "Key": codec.key_of(key)}
        if expected_etag:
            request["ConditionExpression"] = "#e = :expected"
            request["ExpressionAttributeNames"] = _names("#e")
            request["ExpressionAttributeValues"] = {":expected": {"S": expected_etag}}
        else:
            request["ConditionExpression"] = "attribute_exists(#pk)"
            request["ExpressionAttributeNames"] = _names("#pk")
        try:
            await self._call("delete_item", _CCF, **request)
        except ClientError:
            # As on every backend: an expected etag that names a missing item is a mismatch.
            if expected_etag:
                raise Aborted("item etag does not match", reason="ETAG_MISMATCH") from None
            raise NotFound("item not found", reason="ITEM_NOT_FOUND") from None

    # -- query ------------------------------------------------------------------------------

    async def query(self, query: ItemQuery) -> ItemPage:
        scope = query_scope("dynamodb", query)
        bounds = SortBounds(query)
        page_size = page_size_of(query)
        start_after = decode_page_token(query.page_token, scope) if query.page_token else None
        if bounds.empty:
            return ItemPage(items=[], next_page_token="")
        condition = "#pk = :pk"
        values: dict[str, Any] = {":pk": {"S": partition_value(query.collection, query.partition_key)}}
        sort_condition = _sort_key_condition(bounds)
        if sort_condition is not None:
            condition += " AND " + sort_condition
            given = {":eq": bounds.eq, ":prefix": bounds.prefix, ":start": bounds.start, ":end": bounds.end}
            values.update({name: {"S": value} for name, value in given.items() if value is not None})
        names = {"#pk": codec.PK}
        if len(values) > 1:
            names["#sk"] = codec.SK
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not query.descending,
            "ConsistentRead": True,
        }
        exclusive_start = (
            {codec.PK: values[":pk"], codec.SK: {"S": start_after}} if start_after is not None else None
        )
        # One extra item tells whether another page exists, so the last page carries no token.
        # A response stops at 1 MB, so keep asking until the page is full or the partition ends.
        want = page_size + 1
        rows: list[dict[str, Any]] = []
        while len(rows) < want:
            if exclusive_start is not None:
                request["ExclusiveStartKey"] = exclusive_start
            request["Limit"] = want - len(rows)
            response = await self._call("query", **request)
            rows.extend(response.get("Items", []))
            exclusive_start = response.get("LastEvaluatedKey")
            if not exclusive_start:
                break
        items = [_from_wire(r) for r in rows[:page_size]]
        more = len(rows) > page_size
        token = encode_page_token(items[-1].key.sort_key, scope) if more else ""
        return ItemPage(items=items, next_page_token=token)

    async def scan(self, page_size: int = 500) -> AsyncIterator[StoredItem]:
        """Every item of the table (Scan, consistent, page by page)."""
        request: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True, "Limit": page_size}
        while True:
            response = await self._call("scan", **request)
            for row in response.get("Items", []):
                yield _from_wire(row)
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    # -- batches ------------------------------------------------------------------------------

    async def _read_many(self, keys: Sequence[ItemKey]) -> dict[ItemKey, dict[str, Any]]:
        """Current items by key (BatchGetItem in chunks of 100, unprocessed keys retried)."""
        wanted = unique_keys(keys)
        chunks = [wanted[i : i + BATCH_GET_LIMIT] for i in range(0, len(wanted), BATCH_GET_LIMIT)]
        found: dict[ItemKey, dict[str, Any]] = {}
        for rows in await asyncio.gather(*(self._batch_get_chunk(c) for c in chunks)):
            for row in rows:
                found[codec.item_key_of(row)] = row
        return found

    async def _batch_get_chunk(self, keys: Sequence[ItemKey]) -> list[dict[str, Any]]:
        pending: dict[str, Any] = {
            self._table: {"Keys": [codec.key_of(k) for k in keys], "ConsistentRead": True}
        }
        rows: list[dict[str, Any]] = []
        policy = self._config.retry
        for attempt in range(policy.max_attempts):
            response = await self._call("batch_get_item", RequestItems=pending)
            rows.extend(response.get("Responses", {}).get(self._table, []))
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                return rows
            if attempt + 1 < policy.max_attempts:
                await asyncio.sleep(backoff_seconds(attempt, policy))
        raise exhausted("BatchGetItem (unprocessed keys)", policy)

    async def batch_get(self, keys: Sequence[ItemKey]) -> list[StoredItem]:
        if not keys:
            return []
        found = await self._read_many(keys)
        return [_from_wire(found[k]) for k in keys if k in found]

    async def batch_write(self, ops: Sequence[PutOp | DeleteOp]) -> list[StoredItem]:
        writes = {
            i: _Write(op.key, op.attributes, f"writes[{i}].put")
            for i, op in enumerate(ops)
            if isinstance(op, PutOp)
        }
        if not ops:
            return []
        # BatchWriteItem replaces whole items, so learn the created times of existing items
        # first (the batch is not atomic anyway; a racing writer can only shift `created`).
        current = await self._read_many([op.key for op in ops if isinstance(op, PutOp)])
        created: dict[ItemKey, int] = {k: int(v[codec.CREATED]["N"]) for k, v in current.items()}
        # A request may name a key once: a repeated key starts the next request, and requests
        # go out in order, so a later op on a key lands after an earlier one.
        chunks: list[list[dict[str, Any]]] = [[]]
        chunk_keys: set[ItemKey] = set()
        stored: list[StoredItem] = []
        for i, op in enumerate(ops):
            if len(chunks[-1]) == BATCH_WRITE_LIMIT or op.key in chunk_keys:
                chunks.append([])
                chunk_keys = set()
            chunk_keys.add(op.key)
            if isinstance(op, PutOp):
                write = writes[i]
                first = created.setdefault(op.key, write.now)
                chunks[-1].append({"PutRequest": {"Item": write.full_item(first)}})
                stored.append(write.stored(first))
            else:
                created.pop(op.key, None)
                chunks[-1].append({"DeleteRequest": {"Key": codec.key_of(op.key)}})
        for chunk in chunks:
            await self._batch_write_chunk(chunk)
        return stored

    async def _batch_write_chunk(self, requests: list[dict[str, Any]]) -> None:
        pending: dict[str, Any] = {self._table: requests}
        policy = self._config.retry
        for attempt in range(policy.max_attempts):
            response = await self._call("batch_write_item", RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
            if attempt + 1 < policy.max_attempts:
                await asyncio.sleep(backoff_seconds(attempt, policy))
        raise exhausted("BatchWriteItem (unprocessed items)", policy)

    # -- transactions -------------------------------------------------------------------------

    async def transact_write(self, ops: Sequence[TransactOp]) -> list[StoredItem]:
        check_transaction(ops, TRANSACTION_LIMIT)
        actions: list[dict[str, Any]] = []
        writes: list[_Write] = []
        total = 0
        for i, op in enumerate(ops):
            if isinstance(op, PutOp):
                write = _Write(op.key, op.attributes, f"writes[{i}].put.item")
                writes.append(write)
                total += write.size
                action: dict[str, Any] = {
                    "TableName": self._table,
                    "Key": codec.key_of(op.key),
                    "UpdateExpression": _WRITE,
                    "ExpressionAttributeValues": write.values(),
                }
                names = list(_WRITE_NAMES)
                condition = _condition(op.must_not_exist, op.expected_etag, None, action, names)
                action["ExpressionAttributeNames"] = _names(*names)
                if condition:
                    action["ConditionExpression"] = condition
                actions.append({"Update": action})
            elif isinstance(op, DeleteOp):
                action = {"TableName": self._table, "Key": codec.key_of(op.key)}
                names = []
                condition = _condition(False, op.expected_etag, None, action, names)
                if condition:
                    action["ConditionExpression"] = condition
                    action["ExpressionAttributeNames"] = _names(*names)
                actions.append({"Delete": action})
            else:
                action = {"TableName": self._table, "Key": codec.key_of(op.key)}
                names = []
                action["ConditionExpression"] = _condition(
                    op.must_not_exist, op.expected_etag, "attribute_exists(#pk)", action, names
                )
                action["ExpressionAttributeNames"] = _names(*names)
                actions.append({"ConditionCheck": action})
        if total > TRANSACTION_BYTES:
            raise InvalidArgument(
                "a DynamoDB transaction carries at most 4 MB of items",
                field_violations=[("writes", f"{total} bytes of items; the limit is {TRANSACTION_BYTES}")],
            )
        await self._transact(actions)
        # TransactWriteItems returns nothing: read back the created times that if_not_exists
        # kept for overwritten items.
        current = await self._read_many([w.key for w in writes])
        return [
            w.stored(int(current[w.key][codec.CREATED]["N"]) if w.key in current else w.now) for w in writes
        ]

    async def _transact(self, actions: list[dict[str, Any]]) -> None:
        policy = self._config.retry
        for attempt in range(policy.max_attempts):
            try:
                await self._call(
                    "transact_write_items", frozenset({"TransactionCanceledException"}), TransactItems=actions
                )
                return
            except ClientError as exc:
                reasons = [str(r.get("Code", "None")) for r in exc.response.get("CancellationReasons", [])]
                throttled = any(code in THROTTLE_CODES for code in reasons)
                if throttled and not any(c not in THROTTLE_CODES and c != "None" for c in reasons):
                    if attempt + 1 < policy.max_attempts:
                        await asyncio.sleep(backoff_seconds(attempt, policy))
                        continue
                    raise exhausted("TransactWriteItems", policy) from None
                raise _cancellation_error(reasons) from None
        raise exhausted("TransactWriteItems", policy)


def _condition(
    must_not_exist: bool,
    expected_etag: str | None,
    default: str | None,
    action: dict[str, Any],
    names: list[str],
) -> str | None:
    if must_not_exist:
        names.append("#pk")
        return "attribute_not_exists(#pk)"
    if expected_etag:
        names.append("#e")
        action.setdefault("ExpressionAttributeValues", {})[":expected"] = {"S": expected_etag}
        return "#e = :expected"
    if default is not None:
        names.append("#pk")
    return default


def _cancellation_error(reasons: Sequence[str]) -> Exception:
    """Which operation cancelled the transaction, in the service's terms."""
    for index, code in enumerate(reasons):
        if code == "ConditionalCheckFailed":
            return condition_failed(index, "condition not met")
        if code == "TransactionConflict":
            return condition_failed(index, "conflict with a concurrent write", reason="TRANSACTION_CONFLICT")
        if code == "ValidationError":
            return InvalidArgument(
                f"DynamoDB refused operation {index} of the transaction",
                field_violations=[(f"writes[{index}]", "refused by DynamoDB")],
            )
        if code not in ("None", "") and code not in THROTTLE_CODES:
            return Aborted(
                f"transaction cancelled at operation {index} ({code})",
                reason="TRANSACTION_CANCELLED",
                metadata={"operation_index": str(index)},
            )
    return Aborted("transaction cancelled", reason="TRANSACTION_CANCELLED")


def _sort_key_condition(bounds: SortBounds) -> str | None:
    """The KeyConditionExpression part of a sort-key bound (SortBounds holds one form: eq,
    prefix, or a range with either side open); None: no bound."""
    if bounds.eq is not None:
        return "#sk = :eq"
    if bounds.prefix is not None:
        return "begins_with(#sk, :prefix)"
    if bounds.start is not None and bounds.end is not None:
        return "#sk BETWEEN :start AND :end"
    if bounds.start is not None:
        return "#sk >= :start"
    if bounds.end is not None:
        return "#sk <= :end"
    return None
