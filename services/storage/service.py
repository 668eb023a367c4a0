"""StorageService: per-tenant objects and items through one API, whatever the backend.

The servicer owns what must be the same for every backend: key rules (re-checked for every RPC
that takes a key), upload framing, download chunking (<= 256 KiB per message), page size
defaults, item size limit, attribute conversion, duplicate-key checks, capability answers
(FAILED_PRECONDITION naming the capability), and storage_bytes usage deltas.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import timedelta

import grpc
import structlog
from google.api import httpbody_pb2
from google.protobuf import empty_pb2
from makoto.storage.v1 import items_pb2, objects_pb2, storage_service_pb2_grpc

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.identity import Role, maybe_principal
from services.common.usage import STORAGE_BYTES, UsageRecorder
from services.storage.attributes import attributes_from_proto, check_item_size
from services.storage.connections import TenantConnections
from services.storage.convert import item_key, item_message, key_message, object_metadata, timestamp
from services.storage.keys import validate_object_key
from services.storage.paging import fit_page
from services.storage.ports import (
    ConditionCheckOp,
    DeleteOp,
    ItemKey,
    ItemQuery,
    ObjectStore,
    PutOp,
    SignMethod,
    SortKeyCondition,
    TransactOp,
)
from services.storage.quota import QuotaGuard, StorageQuota

log = structlog.get_logger("makoto.storage")

DOWNLOAD_CHUNK = 256 * 1024
DEFAULT_PAGE_SIZE = 100
DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_SIGN_TTL = timedelta(minutes=15)
# Hash big chunks off the event loop (hashlib releases the GIL for them).
_HASH_OFFLOAD_BYTES = 64 * 1024


def _pieces(chunk: bytes) -> list[bytes]:
    if len(chunk) <= DOWNLOAD_CHUNK:
        return [chunk]
    return [chunk[i : i + DOWNLOAD_CHUNK] for i in range(0, len(chunk), DOWNLOAD_CHUNK)]


async def _aclose(stream: AsyncIterator[bytes]) -> None:
    closer = getattr(stream, "aclose", None)
    if closer is not None:
        await closer()


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class StorageServicer(storage_service_pb2_grpc.StorageServiceServicer):
    def __init__(
        self,
        connections: TenantConnections,
        recorder: UsageRecorder | None = None,
        quota: StorageQuota | None = None,
        tenant_seen: Callable[[str], None] | None = None,
    ) -> None:
        self._connections = connections
        self._recorder = recorder
        self._quota = quota
        # Told of every tenant whose stored bytes change (the reconciler's worklist).
        self._tenant_seen = tenant_seen

    # -- guards and usage ------------------------------------------------------------------

    @staticmethod
    def _check_tenant(tenant_id: str) -> str:
        """Defence in depth: the interceptor already matched token and request tenant."""
        principal = maybe_principal()
        if (
            principal is not None
            and principal.role in (Role.TENANT_ADMIN, Role.MEMBER)
            and principal.tenant_id != tenant_id
        ):
            raise PermissionDenied("token is not valid for this tenant")
        return tenant_id

    async def _record_bytes(self, tenant_id: str, backend: str, delta: int) -> None:
        if self._tenant_seen is not None:
            self._tenant_seen(tenant_id)
        if delta == 0:
            return
        if self._quota is not None:
            try:
                await self._quota.stored(tenant_id, delta)
            except Exception:  # the write happened; the running total heals at the next refresh
                log.exception("stored bytes update failed", tenant_id=tenant_id)
        if self._recorder is None:
            return
        try:
            await self._recorder.record(
                meter=STORAGE_BYTES, tenant_id=tenant_id, value=delta, dimensions={"backend": backend}
            )
        except Exception:  # metering never fails the write it measures
            log.exception("storage_bytes record failed", tenant_id=tenant_id)

    # -- objects: writes -------------------------------------------------------------------

    async def UploadObject(
        self,
        request_iterator: AsyncIterator[objects_pb2.UploadObjectRequest],
        context: grpc.aio.ServicerContext,
    ) -> objects_pb2.ObjectMetadata:
        messages = aiter(request_iterator)
        try:
            first = await anext(messages)
        except StopAsyncIteration:
            raise InvalidArgument(
                "empty upload: send the header first", field_violations=[("header", "missing")]
            ) from None
        if first.WhichOneof("part") != "header":
            raise InvalidArgument(
                "the first message of an upload must be the header",
                field_violations=[("header", "must be the first message")],
            )
        header = first.header
        tenant_id = self._check_tenant(header.tenant_id)
        key = validate_object_key(header.key, "header.key")
        expected = header.expected_sha256 or None

        async def chunks() -> AsyncIterator[bytes]:
            digest = hashlib.sha256() if expected else None
            async for message in messages:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument(
                        "an upload has exactly one header, first",
                        field_violations=[("header", "sent more than once")],
                    )
                data = message.chunk
                if digest is not None and data:
                    if len(data) >= _HASH_OFFLOAD_BYTES:
                        await asyncio.to_thread(digest.update, data)
                    else:
                        digest.update(data)
                if data:
                    yield data
            if digest is not None and digest.hexdigest() != expected:
                # Raised inside the stream: the adapter aborts and nothing is stored.
                raise FailedPrecondition(
                    "uploaded content does not match expected_sha256", reason="CHECKSUM_MISMATCH"
                )

        return await self._put_object(
            tenant_id,
            key,
            chunks(),
            content_type=header.content_type or DEFAULT_CONTENT_TYPE,
            user_metadata=dict(header.user_metadata),
            if_none_match=header.if_none_match,
            declared=header.content_length if header.HasField("content_length") else None,
        )

    async def PutObjectContent(
        self, request: objects_pb2.PutObjectContentRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.ObjectMetadata:
        tenant_id = self._check_tenant(request.tenant_id)
        key = validate_object_key(request.key)
        return await self._put_object(
            tenant_id,
            key,
            _one(request.content.data),
            content_type=request.content.content_type or DEFAULT_CONTENT_TYPE,
            user_metadata={},
            if_none_match=request.if_none_match,
            declared=len(request.content.data),
        )

    async def _put_object(
        self,
        tenant_id: str,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        user_metadata: dict[str, str],
        if_none_match: bool,
        declared: int | None,
    ) -> objects_pb2.ObjectMetadata:
        async with self._connections.objects(tenant_id) as lease:
            store = lease.store
            if if_none_match and not store.capabilities.if_none_match:
                raise _capability("object store", lease.backend, "if_none_match")
            # Size before the write, for the storage_bytes delta (a racing writer can make
            # one delta slightly off; metering is eventually corrected by the next write).
            previous = 0 if if_none_match else await _size_or_zero(store, key)
            if self._quota is not None:
                # Refused here, before the first byte is read, when the declared size is over.
                guard = await self._quota.guard(tenant_id, replacing=previous, declared=declared)
                chunks = _guarded(chunks, guard, declared)
            info = await store.put(
                key,
                chunks,
                content_type=content_type,
                user_metadata=user_metadata,
                if_none_match=if_none_match,
            )
            backend = lease.backend
        await self._record_bytes(tenant_id, backend, info.size - previous)
        return object_metadata(info)

    async def DeleteObject(
        self, request: objects_pb2.DeleteObjectRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id = self._check_tenant(request.tenant_id)
        key = validate_object_key(request.key)
        async with self._connections.objects(tenant_id) as lease:
            info = await lease.store.delete(key)
            backend = lease.backend
        await self._record_bytes(tenant_id, backend, -info.size)
        return empty_pb2.Empty()

    # -- objects: reads --------------------------------------------------------------------

    async def DownloadObject(
        self, request: objects_pb2.DownloadObjectRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[objects_pb2.DownloadObjectResponse]:
        tenant_id = self._check_tenant(request.tenant_id)
        key = validate_object_key(request.key)
        async with self._connections.objects(tenant_id) as lease:
            ranged = request.range_start > 0 or request.range_length > 0
            if ranged and not lease.store.capabilities.ranged_read:
                raise _capability("object store", lease.backend, "ranged_read")
            info, stream = await lease.store.get(
                key, start=request.range_start, length=request.range_length or None
            )
            try:
                yield objects_pb2.DownloadObjectResponse(metadata=object_metadata(info))
                async for chunk in stream:
                    for piece in _pieces(chunk):
                        yield objects_pb2.DownloadObjectResponse(chunk=piece)
            finally:
                await _aclose(stream)

    async def GetObjectContent(
        self, request: objects_pb2.GetObjectContentRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        tenant_id = self._check_tenant(request.tenant_id)
        key = validate_object_key(request.key)
        async with self._connections.objects(tenant_id) as lease:
            info, stream = await lease.store.get(key)
            sent_first = False
            try:
                async for chunk in stream:
                    for piece in _pieces(chunk):
                        if not sent_first:
                            # The transcoder takes the Content-Type from the first message.
                            yield httpbody_pb2.HttpBody(content_type=info.content_type, data=piece)
                            sent_first = True
                        else:
                            yield httpbody_pb2.HttpBody(data=piece)
            finally:
                await _aclose(stream)
            if not sent_first:
                yield httpbody_pb2.HttpBody(content_type=info.content_type)

    async def GetObjectMetadata(
        self, request: objects_pb2.GetObjectMetadataRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.ObjectMetadata:
        tenant_id = self._check_tenant(request.tenant_id)
        key = validate_object_key(request.key)
        async with self._connections.objects(tenant_id) as lease:
            return object_metadata(await lease.store.head(key))

    async def ListObjects(
        self, request: objects_pb2.ListObjectsRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.ListObjectsResponse:
        tenant_id = self._check_tenant(request.tenant_id)
        if "\x00" in request.prefix:
            raise InvalidArgument(
                "prefix must not contain NUL", field_violations=[("prefix", "contains NUL")]
            )
        size = request.page_size or DEFAULT_PAGE_SIZE
        async with self._connections.objects(tenant_id) as lease:
            while True:
                page = await lease.store.list(request.prefix, size, request.page_token)
                objects = [object_metadata(o) for o in page.objects]
                fits = fit_page(objects)
                if fits == len(objects):
                    break
                size = fits  # ask again for fewer: the adapter's token then resumes after them
        return objects_pb2.ListObjectsResponse(objects=objects, next_page_token=page.next_page_token)

    async def SignObjectUrl(
        self, request: objects_pb2.SignObjectUrlRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.SignObjectUrlResponse:
        tenant_id = self._check_tenant(request.tenant_id)
        key = validate_object_key(request.key)
        method: SignMethod
        if request.method == objects_pb2.SIGNED_URL_METHOD_GET:
            method = "GET"
        elif request.method == objects_pb2.SIGNED_URL_METHOD_PUT:
            method = "PUT"
        else:
            raise InvalidArgument("method must be GET or PUT", field_violations=[("method", "unsupported")])
        ttl = request.ttl.ToTimedelta() if request.HasField("ttl") else DEFAULT_SIGN_TTL
        async with self._connections.objects(tenant_id) as lease:
            if not lease.store.capabilities.sign_url:
                raise _capability("object store", lease.backend, "sign_url")
            signed = await lease.store.sign_url(key, method, ttl)
        return objects_pb2.SignObjectUrlResponse(url=signed.url, expire_time=timestamp(signed.expires))

    # -- items -----------------------------------------------------------------------------

    async def GetItem(
        self, request: items_pb2.GetItemRequest, context: grpc.aio.ServicerContext
    ) -> items_pb2.Item:
        tenant_id = self._check_tenant(request.tenant_id)
        key = ItemKey(request.collection, request.partition_key, request.sort_key)
        async with self._connections.items(tenant_id) as lease:
            return item_message(await lease.store.get(key))

    async def PutItem(
        self, request: items_pb2.PutItemRequest, context: grpc.aio.ServicerContext
    ) -> items_pb2.Item:
        tenant_id = self._check_tenant(request.tenant_id)
        if request.must_not_exist and request.expected_etag:
            raise InvalidArgument(
                "set at most one of must_not_exist and expected_etag",
                field_violations=[("expected_etag", "conflicts with must_not_exist")],
            )
        op = _put_op(request.item, "item", request.must_not_exist, request.expected_etag)
        async with self._connections.items(tenant_id) as lease:
            stored = await lease.store.put(
                op.key, op.attributes, must_not_exist=op.must_not_exist, expected_etag=op.expected_etag
            )
        return item_message(stored)

    async def DeleteItem(
        self, request: items_pb2.DeleteItemRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        tenant_id = self._check_tenant(request.tenant_id)
        key = ItemKey(request.collection, request.partition_key, request.sort_key)
        async with self._connections.items(tenant_id) as lease:
            await lease.store.delete(key, expected_etag=request.expected_etag or None)
        return empty_pb2.Empty()

    async def QueryItems(
        self, request: items_pb2.QueryItemsRequest, context: grpc.aio.ServicerContext
    ) -> items_pb2.QueryItemsResponse:
        tenant_id = self._check_tenant(request.tenant_id)
        which = request.WhichOneof("sort_key_condition")
        condition: SortKeyCondition | None = None
        if which == "sort_key_equals":
            condition = SortKeyCondition("eq", value=request.sort_key_equals)
        elif which == "sort_key_prefix":
            condition = SortKeyCondition("prefix", value=request.sort_key_prefix)
        elif which == "sort_key_range":
            rng = request.sort_key_range
            if rng.start or rng.end:
                condition = SortKeyCondition("range", start=rng.start or None, end=rng.end or None)
        query = ItemQuery(
            collection=request.collection,
            partition_key=request.partition_key,
            condition=condition,
            descending=request.descending,
            page_size=request.page_size or DEFAULT_PAGE_SIZE,
            page_token=request.page_token,
        )
        async with self._connections.items(tenant_id) as lease:
            while True:
                page = await lease.store.query(query)
                items = [item_message(i) for i in page.items]
                fits = fit_page(items)
                if fits == len(items):
                    break
                # A page bounded by bytes too: ask for the items that fit, and a token after them.
                query = replace(query, page_size=fits)
        return items_pb2.QueryItemsResponse(items=items, next_page_token=page.next_page_token)

    async def BatchGetItems(
        self, request: items_pb2.BatchGetItemsRequest, context: grpc.aio.ServicerContext
    ) -> items_pb2.BatchGetItemsResponse:
        tenant_id = self._check_tenant(request.tenant_id)
        keys = [item_key(k) for k in request.keys]
        _refuse_duplicates(keys, "keys")
        async with self._connections.items(tenant_id) as lease:
            found = await lease.store.batch_get(keys)
        present = {item.key for item in found}
        items = [item_message(i) for i in found]
        if fit_page(items) < len(items):
            raise InvalidArgument(
                f"the {len(items)} items asked for are too large for one response; ask for fewer keys",
                reason="RESPONSE_TOO_LARGE",
                field_violations=[("keys", "the items found exceed the response size limit")],
            )
        return items_pb2.BatchGetItemsResponse(
            items=items, missing_keys=[key_message(k) for k in keys if k not in present]
        )

    async def BatchWriteItems(
        self, request: items_pb2.BatchWriteItemsRequest, context: grpc.aio.ServicerContext
    ) -> items_pb2.BatchWriteItemsResponse:
        tenant_id = self._check_tenant(request.tenant_id)
        ops: list[PutOp | DeleteOp] = []
        for i, write in enumerate(request.writes):
            if write.WhichOneof("operation") == "put":
                ops.append(_put_op(write.put, f"writes[{i}].put", False, ""))
            else:
                ops.append(DeleteOp(item_key(write.delete)))
        _refuse_duplicates([op.key for op in ops], "writes")
        async with self._connections.items(tenant_id) as lease:
            stored = await lease.store.batch_write(ops)
        return items_pb2.BatchWriteItemsResponse(items=[item_message(i) for i in stored])

    async def TransactWriteItems(
        self, request: items_pb2.TransactWriteItemsRequest, context: grpc.aio.ServicerContext
    ) -> items_pb2.TransactWriteItemsResponse:
        tenant_id = self._check_tenant(request.tenant_id)
        ops = [_transact_op(w, f"writes[{i}]") for i, w in enumerate(request.writes)]
        _refuse_duplicates([op.key for op in ops], "writes")
        async with self._connections.items(tenant_id) as lease:
            caps = lease.store.capabilities
            if not caps.transactions:
                raise _capability("item store", lease.backend, "transactions")
            if len(ops) > caps.max_transaction_ops:
                raise FailedPrecondition(
                    f"the {lease.backend} item store runs at most {caps.max_transaction_ops} "
                    "operations per transaction (capability max_transaction_ops)",
                    reason="CAPABILITY_UNSUPPORTED",
                    metadata={"capability": "max_transaction_ops", "backend": lease.backend},
                )
            partitions = {(op.key.collection, op.key.partition_key) for op in ops}
            if len(partitions) > 1 and not caps.cross_partition_transactions:
                raise _capability("item store", lease.backend, "cross_partition_transactions")
            stored = await lease.store.transact_write(ops)
        return items_pb2.TransactWriteItemsResponse(items=[item_message(i) for i in stored])


# -- helpers ---------------------------------------------------------------------------------


def _capability(kind: str, backend: str, capability: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"the {backend} {kind} does not support this (capability {capability})",
        reason="CAPABILITY_UNSUPPORTED",
        metadata={"capability": capability, "backend": backend},
    )


async def _guarded(
    chunks: AsyncIterator[bytes], guard: QuotaGuard, declared: int | None
) -> AsyncIterator[bytes]:
    """The upload's chunks, refused (inside the stream, so the adapter aborts) at the first
    byte over a limit, or at the end when the size differs from the declared one."""
    async for data in chunks:
        guard.add(len(data))
        if declared is not None and guard.size > declared:
            break
        yield data
    if declared is not None and guard.size != declared:
        raise InvalidArgument(
            f"content is not the declared {declared} bytes",
            field_violations=[("header.content_length", "does not match the content sent")],
        )


async def _size_or_zero(store: ObjectStore, key: str) -> int:
    try:
        return (await store.head(key)).size
    except NotFound:
        return 0


def _put_op(item: items_pb2.Item, path: str, must_not_exist: bool, expected_etag: str) -> PutOp:
    check_item_size(item, path)
    return PutOp(
        key=item_key(item),
        attributes=attributes_from_proto(item.attributes, f"{path}.attributes"),
        must_not_exist=must_not_exist,
        expected_etag=expected_etag or None,
    )


def _transact_op(write: items_pb2.TransactWrite, path: str) -> TransactOp:
    which = write.WhichOneof("operation")
    if which == "put":
        put = write.put
        if put.must_not_exist and put.expected_etag:
            raise InvalidArgument(
                "set at most one of must_not_exist and expected_etag",
                field_violations=[(f"{path}.put.expected_etag", "conflicts with must_not_exist")],
            )
        return _put_op(put.item, f"{path}.put.item", put.must_not_exist, put.expected_etag)
    if which == "delete":
        return DeleteOp(item_key(write.delete.key), expected_etag=write.delete.expected_etag or None)
    check = write.condition_check
    if check.must_not_exist and check.expected_etag:
        raise InvalidArgument(
            "set at most one of must_not_exist and expected_etag",
            field_violations=[(f"{path}.condition_check.expected_etag", "conflicts with must_not_exist")],
        )
    return ConditionCheckOp(
        item_key(check.key), expected_etag=check.expected_etag or None, must_not_exist=check.must_not_exist
    )


def _refuse_duplicates(keys: Sequence[ItemKey], field: str) -> None:
    seen: set[ItemKey] = set()
    for i, key in enumerate(keys):
        if key in seen:
            raise InvalidArgument(
                "the same item appears more than once",
                field_violations=[(f"{field}[{i}]", "duplicate item key")],
            )
        seen.add(key)
