"""gRPC face of StorageService: protobuf <-> domain, nothing else.

Requests arrive authenticated, tenant-checked and validated against the proto's rules by the
interceptor; the tenant is checked once more here (defence in depth). Upload framing (header
first, then chunks), download chunking (<= 256 KiB per message), page size defaults and
message-size-bounded pages are this layer's; the use cases are ObjectManager (objects.py) and
ItemManager (items.py), the proto mapping is convert.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.api import httpbody_pb2
from google.protobuf import empty_pb2
from makoto.storage.v1 import items_pb2, objects_pb2, storage_service_pb2_grpc

from services.common.errors import InvalidArgument, PermissionDenied
from services.common.identity import Role, maybe_principal
from services.common.timestamps import timestamp
from services.storage import convert
from services.storage.convert import item_key, item_message, key_message, object_metadata
from services.storage.items import ItemManager
from services.storage.keys import validate_object_key
from services.storage.objects import ObjectManager
from services.storage.paging import fit_page
from services.storage.ports import ItemKey

DOWNLOAD_CHUNK = 256 * 1024
DEFAULT_PAGE_SIZE = 100


def _pieces(chunk: bytes) -> list[bytes]:
    if len(chunk) <= DOWNLOAD_CHUNK:
        return [chunk]
    return [chunk[i : i + DOWNLOAD_CHUNK] for i in range(0, len(chunk), DOWNLOAD_CHUNK)]


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


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


async def _upload_chunks(
    messages: AsyncIterator[objects_pb2.UploadObjectRequest],
) -> AsyncIterator[bytes]:
    async for message in messages:
        if message.WhichOneof("part") != "chunk":
            raise InvalidArgument(
                "an upload has exactly one header, first",
                field_violations=[("header", "sent more than once")],
            )
        if message.chunk:
            yield message.chunk


class StorageServicer(storage_service_pb2_grpc.StorageServiceServicer):
    def __init__(self, objects: ObjectManager, items: ItemManager) -> None:
        self._objects = objects
        self._items = items

    # -- objects ---------------------------------------------------------------------------

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
        info = await self._objects.put(
            _check_tenant(header.tenant_id),
            validate_object_key(header.key, "header.key"),
            _upload_chunks(messages),
            content_type=header.content_type,
            user_metadata=dict(header.user_metadata),
            if_none_match=header.if_none_match,
            declared=header.content_length if header.HasField("content_length") else None,
            expected_sha256=header.expected_sha256 or None,
        )
        return object_metadata(info)

    async def PutObjectContent(
        self, request: objects_pb2.PutObjectContentRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.ObjectMetadata:
        info = await self._objects.put(
            _check_tenant(request.tenant_id),
            validate_object_key(request.key),
            _one(request.content.data),
            content_type=request.content.content_type,
            user_metadata={},
            if_none_match=request.if_none_match,
            declared=len(request.content.data),
        )
        return object_metadata(info)

    async def DeleteObject(
        self, request: objects_pb2.DeleteObjectRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._objects.delete(_check_tenant(request.tenant_id), validate_object_key(request.key))
        return empty_pb2.Empty()

    async def DownloadObject(
        self, request: objects_pb2.DownloadObjectRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[objects_pb2.DownloadObjectResponse]:
        tenant_id = _check_tenant(request.tenant_id)
        key = validate_object_key(request.key)
        async with self._objects.read(
            tenant_id, key, start=request.range_start, length=request.range_length or None
        ) as (info, stream):
            yield objects_pb2.DownloadObjectResponse(metadata=object_metadata(info))
            async for chunk in stream:
                for piece in _pieces(chunk):
                    yield objects_pb2.DownloadObjectResponse(chunk=piece)

    async def GetObjectContent(
        self, request: objects_pb2.GetObjectContentRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        tenant_id = _check_tenant(request.tenant_id)
        key = validate_object_key(request.key)
        async with self._objects.read(tenant_id, key) as (info, stream):
            sent_first = False
            async for chunk in stream:
                for piece in _pieces(chunk):
                    if not sent_first:
                        # The transcoder takes the Content-Type from the first message.
                        yield httpbody_pb2.HttpBody(content_type=info.content_type, data=piece)
                        sent_first = True
                    else:
                        yield httpbody_pb2.HttpBody(data=piece)
        if not sent_first:
            yield httpbody_pb2.HttpBody(content_type=info.content_type)

    async def GetObjectMetadata(
        self, request: objects_pb2.GetObjectMetadataRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.ObjectMetadata:
        tenant_id = _check_tenant(request.tenant_id)
        return object_metadata(await self._objects.head(tenant_id, validate_object_key(request.key)))

    async def ListObjects(
        self, request: objects_pb2.ListObjectsRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.ListObjectsResponse:
        objects, token = await self._objects.list(
            _check_tenant(request.tenant_id),
            request.prefix,
            request.page_size or DEFAULT_PAGE_SIZE,
            request.page_token,
            object_metadata,
            fit_page,
        )
        return objects_pb2.ListObjectsResponse(objects=objects, next_page_token=token)

    async def SignObjectUrl(
        self, request: objects_pb2.SignObjectUrlRequest, context: grpc.aio.ServicerContext
    ) -> objects_pb2.SignObjectUrlResponse:
        tenant_id = _check_tenant(request.tenant_id)
        key = validate_object_key(request.key)
        method = convert.sign_method(request.method)
        ttl = request.ttl.ToTimedelta() if request.HasField("ttl") else None
        signed = await self._objects.sign_url(tenant_id, key, method, ttl)
        return objects_pb2.SignObjectUrlResponse(url=signed.url, expire_time=timestamp(signed.expires))

    # -- items -----------------------------------------------------------------------------

    async def GetItem(
        self, request: items_pb2.GetItemRequest, context: grpc.aio.ServicerContext
    ) -> items_pb2.Item:
        key = ItemKey(request.collection, request.partition_key, request.sort_key)
        return item_message(await self._items.get(_check_tenant(request.tenant_id), key))

    async def PutItem(
        self, request: items_pb2.PutItemRequest, context: grpc.aio.ServicerContext
    ) -> items_pb2.Item:
        tenant_id = _check_tenant(request.tenant_id)
        op = convert.put_op(
            request.item, "item", request.must_not_exist, request.expected_etag, "expected_etag"
        )
        return item_message(await self._items.put(tenant_id, op))

    async def DeleteItem(
        self, request: items_pb2.DeleteItemRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        key = ItemKey(request.collection, request.partition_key, request.sort_key)
        await self._items.delete(_check_tenant(request.tenant_id), key, request.expected_etag or None)
        return empty_pb2.Empty()

    async def QueryItems(
        self, request: items_pb2.QueryItemsRequest, context: grpc.aio.ServicerContext
    ) -> items_pb2.QueryItemsResponse:
        tenant_id = _check_tenant(request.tenant_id)
        query = convert.item_query(request, DEFAULT_PAGE_SIZE)
        items, token = await self._items.query(tenant_id, query, item_message, fit_page)
        return items_pb2.QueryItemsResponse(items=items, next_page_token=token)

    async def BatchGetItems(
        self, request: items_pb2.BatchGetItemsRequest, context: grpc.aio.ServicerContext
    ) -> items_pb2.BatchGetItemsResponse:
        tenant_id = _check_tenant(request.tenant_id)
        found, missing = await self._items.batch_get(tenant_id, [item_key(k) for k in request.keys])
        items = [item_message(i) for i in found]
        if fit_page(items) < len(items):
            raise InvalidArgument(
                f"the {len(items)} items asked for are too large for one response; ask for fewer keys",
                reason="RESPONSE_TOO_LARGE",
                field_violations=[("keys", "the items found exceed the response size limit")],
            )
        return items_pb2.BatchGetItemsResponse(items=items, missing_keys=[key_message(k) for k in missing])

    async def BatchWriteItems(
        self, request: items_pb2.BatchWriteItemsRequest, context: grpc.aio.ServicerContext
    ) -> items_pb2.BatchWriteItemsResponse:
        tenant_id = _check_tenant(request.tenant_id)
        ops = [convert.batch_write_op(w, f"writes[{i}]") for i, w in enumerate(request.writes)]
        stored = await self._items.batch_write(tenant_id, ops)
        return items_pb2.BatchWriteItemsResponse(items=[item_message(i) for i in stored])

    async def TransactWriteItems(
        self, request: items_pb2.TransactWriteItemsRequest, context: grpc.aio.ServicerContext
    ) -> items_pb2.TransactWriteItemsResponse:
        tenant_id = _check_tenant(request.tenant_id)
        ops = [convert.transact_op(w, f"writes[{i}]") for i, w in enumerate(request.writes)]
        stored = await self._items.transact_write(tenant_id, ops)
        return items_pb2.TransactWriteItemsResponse(items=[item_message(i) for i in stored])
