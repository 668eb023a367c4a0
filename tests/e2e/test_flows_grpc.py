"""The newcomer's journey with the generated gRPC stubs through Envoy's port, against the real
mesh: a multi-MiB client-streamed upload, ranged downloads, items with atomic transactions and
batches, every LLM RPC, usage grouped by method and the invoice; errors carry google.rpc.Status
details (ErrorInfo / BadRequest) readable with grpc_status.rpc_status.from_call."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from makoto.llm.v1 import llm_pb2, llm_pb2_grpc
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.storage.v1 import items_pb2, objects_pb2, storage_service_pb2_grpc
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.identity import Role
from tests.e2e.conftest import RunningMesh
from tests.support import client_stream

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
CONVERGE_TIMEOUT_S = 15.0
T = TypeVar("T")


def rich_status(err: grpc.aio.AioRpcError) -> tuple[status_pb2.Status, dict[str, Any]]:
    """The google.rpc.Status of a failed call and its details unpacked by type name."""
    status = rpc_status.from_call(err)
    assert status is not None, f"no google.rpc.Status details: {err.code()} {err.details()}"
    assert status.code == err.code().value[0]
    details: dict[str, Any] = {}
    for any_detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo):
            if any_detail.Is(kind.DESCRIPTOR):
                message = kind()
                any_detail.Unpack(message)
                details[kind.DESCRIPTOR.name] = message
    assert details["ErrorInfo"].domain == "makoto"
    return status, details


async def expect_error(
    call: Awaitable[Any], code: grpc.StatusCode, reason: str | None = None
) -> dict[str, Any]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, (caught.value.code(), caught.value.details())
    _, details = rich_status(caught.value)
    if reason is not None:
        assert details["ErrorInfo"].reason == reason, details
    return details


async def chunks_of(
    header: objects_pb2.UploadObjectHeader, data: bytes, size: int = MiB
) -> AsyncIterator[Any]:
    yield objects_pb2.UploadObjectRequest(header=header)
    for i in range(0, len(data), size):
        yield objects_pb2.UploadObjectRequest(chunk=data[i : i + size])


class Client:
    """Stubs on one channel to Envoy, with a per-RPC count of the calls made for the tenant."""

    def __init__(self, channel: grpc.aio.Channel, mesh: RunningMesh, tenant: str) -> None:
        self.tenant = tenant
        self.md = mesh.metadata(Role.TENANT_ADMIN, tenant)
        self.admin_md = mesh.metadata(Role.PLATFORM_ADMIN)
        self.tenants = tenant_pb2_grpc.TenantServiceStub(channel)
        self.storage = storage_service_pb2_grpc.StorageServiceStub(channel)
        self.llm = llm_pb2_grpc.LLMServiceStub(channel)
        self.metering = metering_pb2_grpc.MeteringServiceStub(channel)
        self.calls: Counter[str] = Counter()

    async def unary(self, rpc: str, call: Callable[[], Awaitable[T]]) -> T:
        self.calls[rpc] += 1
        return await call()

    async def download(self, key: str, start: int = 0, length: int = 0) -> tuple[Any, bytes]:
        self.calls["DownloadObject"] += 1
        parts = [
            part
            async for part in self.storage.DownloadObject(
                objects_pb2.DownloadObjectRequest(
                    tenant_id=self.tenant, key=key, range_start=start, range_length=length
                ),
                metadata=self.md,
            )
        ]
        assert parts[0].WhichOneof("part") == "metadata"
        assert all(p.WhichOneof("part") == "chunk" for p in parts[1:])
        assert all(len(p.chunk) <= 256 * 1024 for p in parts[1:])
        return parts[0].metadata, b"".join(p.chunk for p in parts[1:])


def key(collection: str, pk: str, sk: str) -> items_pb2.ItemKey:
    return items_pb2.ItemKey(collection=collection, partition_key=pk, sort_key=sk)


def item(collection: str, pk: str, sk: str, **attrs: items_pb2.AttributeValue) -> items_pb2.Item:
    return items_pb2.Item(collection=collection, partition_key=pk, sort_key=sk, attributes=attrs)


async def test_newcomer_journey_over_grpc(mesh: RunningMesh) -> None:
    tenant = f"grpc-{uuid.uuid4().hex[:10]}"
    async with grpc.aio.insecure_channel(mesh.grpc_target) as channel:
        c = Client(channel, mesh, tenant)
        created = await c.unary(
            "CreateTenant",
            lambda: c.tenants.CreateTenant(
                tenant_pb2.CreateTenantRequest(
                    tenant=tenant_pb2.Tenant(tenant_id=tenant, display_name="gRPC Newcomer"),
                    request_id=uuid.uuid4().hex,
                ),
                metadata=c.admin_md,
            ),
        )
        assert created.state == tenant_pb2.TENANT_STATE_ACTIVE
        assert created.bindings.llm.provider == tenant_pb2.LLM_PROVIDER_OPENAI
        got = await c.unary(
            "GetTenant",
            lambda: c.tenants.GetTenant(tenant_pb2.GetTenantRequest(tenant_id=tenant), metadata=c.md),
        )
        assert got.display_name == "gRPC Newcomer"

        # -- objects: a multi-MiB client-streamed upload, then ranged downloads -------------
        data = os.urandom(5 * MiB + 12345)
        header = objects_pb2.UploadObjectHeader(
            tenant_id=tenant,
            key="videos/clip.bin",
            content_type="video/x-test",
            user_metadata={"camera": "front"},
            expected_sha256=hashlib.sha256(data).hexdigest(),
        )
        meta = await c.unary(
            "UploadObject", lambda: c.storage.UploadObject(chunks_of(header, data), metadata=c.md)
        )
        assert meta.key == "videos/clip.bin"
        assert meta.size_bytes == len(data)
        assert meta.sha256 == hashlib.sha256(data).hexdigest()
        assert meta.content_type == "video/x-test"
        assert dict(meta.user_metadata) == {"camera": "front"}

        info, whole = await c.download("videos/clip.bin")
        assert whole == data
        assert info.size_bytes == len(data) and info.etag == meta.etag
        start, length = MiB - 7, 2 * MiB + 11
        _, part = await c.download("videos/clip.bin", start, length)
        assert part == data[start : start + length]
        _, tail = await c.download("videos/clip.bin", len(data) - 100)
        assert tail == data[-100:]

        # A corrupted upload (wrong checksum) stores nothing and leaves the old version intact.
        bad = objects_pb2.UploadObjectHeader(
            tenant_id=tenant, key="videos/clip.bin", expected_sha256=hashlib.sha256(b"other").hexdigest()
        )
        c.calls["UploadObject"] += 1
        await expect_error(
            client_stream(c.storage.UploadObject, chunks_of(bad, os.urandom(2 * MiB)), c.md),
            grpc.StatusCode.FAILED_PRECONDITION,
            "CHECKSUM_MISMATCH",
        )
        again = await c.unary(
            "GetObjectMetadata",
            lambda: c.storage.GetObjectMetadata(
                objects_pb2.GetObjectMetadataRequest(tenant_id=tenant, key="videos/clip.bin"), metadata=c.md
            ),
        )
        assert again.etag == meta.etag and again.sha256 == meta.sha256

        small = b"tiny object"
        small_header = objects_pb2.UploadObjectHeader(
            tenant_id=tenant, key="videos/notes.txt", content_type="text/plain"
        )
        await c.unary(
            "UploadObject", lambda: c.storage.UploadObject(chunks_of(small_header, small), metadata=c.md)
        )
        listed = await c.unary(
            "ListObjects",
            lambda: c.storage.ListObjects(
                objects_pb2.ListObjectsRequest(tenant_id=tenant, prefix="videos/", page_size=1), metadata=c.md
            ),
        )
        assert [o.key for o in listed.objects] == ["videos/clip.bin"]
        listed = await c.unary(
            "ListObjects",
            lambda: c.storage.ListObjects(
                objects_pb2.ListObjectsRequest(
                    tenant_id=tenant, prefix="videos/", page_size=1, page_token=listed.next_page_token
                ),
                metadata=c.md,
            ),
        )
        assert [o.key for o in listed.objects] == ["videos/notes.txt"]
        await c.unary(
            "DeleteObject",
            lambda: c.storage.DeleteObject(
                objects_pb2.DeleteObjectRequest(tenant_id=tenant, key="videos/notes.txt"), metadata=c.md
            ),
        )
        c.calls["GetObjectMetadata"] += 1
        await expect_error(
            c.storage.GetObjectMetadata(
                objects_pb2.GetObjectMetadataRequest(tenant_id=tenant, key="videos/notes.txt"), metadata=c.md
            ),
            grpc.StatusCode.NOT_FOUND,
            "OBJECT_NOT_FOUND",
        )

        # -- items: put/get with exact numbers, batch write/get, atomic transactions --------
        exact = items_pb2.AttributeValue(int_value=-(2**63))
        money = items_pb2.AttributeValue(decimal_value="1234567890123456789.000000000000000001")
        first = await c.unary(
            "PutItem",
            lambda: c.storage.PutItem(
                items_pb2.PutItemRequest(
                    tenant_id=tenant,
                    item=item("orders", "cust-1", "o-001", total=money, n=exact),
                    must_not_exist=True,
                ),
                metadata=c.md,
            ),
        )
        fetched = await c.unary(
            "GetItem",
            lambda: c.storage.GetItem(
                items_pb2.GetItemRequest(
                    tenant_id=tenant, collection="orders", partition_key="cust-1", sort_key="o-001"
                ),
                metadata=c.md,
            ),
        )
        assert fetched.attributes["total"].decimal_value == "1234567890123456789.000000000000000001"
        assert fetched.attributes["n"].int_value == -(2**63)
        assert fetched.etag == first.etag

        batch = await c.unary(
            "BatchWriteItems",
            lambda: c.storage.BatchWriteItems(
                items_pb2.BatchWriteItemsRequest(
                    tenant_id=tenant,
                    writes=[
                        items_pb2.BatchWrite(
                            put=item("orders", "cust-1", f"o-00{i}", n=items_pb2.AttributeValue(int_value=i))
                        )
                        for i in (2, 3, 4)
                    ]
                    + [items_pb2.BatchWrite(delete=key("orders", "cust-1", "o-001"))],
                ),
                metadata=c.md,
            ),
        )
        assert [i.sort_key for i in batch.items] == ["o-002", "o-003", "o-004"]
        got_batch = await c.unary(
            "BatchGetItems",
            lambda: c.storage.BatchGetItems(
                items_pb2.BatchGetItemsRequest(
                    tenant_id=tenant,
                    keys=[key("orders", "cust-1", s) for s in ("o-001", "o-002", "o-004", "o-009")],
                ),
                metadata=c.md,
            ),
        )
        assert sorted(i.sort_key for i in got_batch.items) == ["o-002", "o-004"]
        assert sorted(k.sort_key for k in got_batch.missing_keys) == ["o-001", "o-009"]
        etags = {i.sort_key: i.etag for i in batch.items}

        # A transaction whose last condition fails applies none of its writes.
        failing = items_pb2.TransactWriteItemsRequest(
            tenant_id=tenant,
            writes=[
                items_pb2.TransactWrite(
                    put=items_pb2.TransactPut(item=item("orders", "cust-1", "o-005"), must_not_exist=True)
                ),
                items_pb2.TransactWrite(
                    delete=items_pb2.TransactDelete(key=key("orders", "cust-1", "o-002"))
                ),
                items_pb2.TransactWrite(
                    put=items_pb2.TransactPut(
                        item=item("orders", "cust-1", "o-003", n=items_pb2.AttributeValue(int_value=33)),
                        expected_etag=etags["o-003"],
                    )
                ),
                items_pb2.TransactWrite(
                    condition_check=items_pb2.TransactConditionCheck(
                        key=key("orders", "cust-1", "o-004"), expected_etag="not-the-etag"
                    )
                ),
            ],
        )
        c.calls["TransactWriteItems"] += 1
        details = await expect_error(
            c.storage.TransactWriteItems(failing, metadata=c.md),
            grpc.StatusCode.ABORTED,
            "TRANSACTION_CONDITION_FAILED",
        )
        assert details["ErrorInfo"].metadata["operation_index"] == "3"
        after = await c.unary(
            "BatchGetItems",
            lambda: c.storage.BatchGetItems(
                items_pb2.BatchGetItemsRequest(
                    tenant_id=tenant, keys=[key("orders", "cust-1", s) for s in ("o-002", "o-003", "o-005")]
                ),
                metadata=c.md,
            ),
        )
        assert {i.sort_key: i.etag for i in after.items} == {"o-002": etags["o-002"], "o-003": etags["o-003"]}
        assert [k.sort_key for k in after.missing_keys] == ["o-005"]

        # The same transaction with a true condition applies every write.
        failing.writes[3].condition_check.expected_etag = etags["o-004"]
        done = await c.unary(
            "TransactWriteItems", lambda: c.storage.TransactWriteItems(failing, metadata=c.md)
        )
        assert [i.sort_key for i in done.items] == ["o-005", "o-003"]
        page = await c.unary(
            "QueryItems",
            lambda: c.storage.QueryItems(
                items_pb2.QueryItemsRequest(
                    tenant_id=tenant,
                    collection="orders",
                    partition_key="cust-1",
                    sort_key_prefix="o-",
                    descending=True,
                ),
                metadata=c.md,
            ),
        )
        assert [i.sort_key for i in page.items] == ["o-005", "o-004", "o-003"]
        assert page.items[2].attributes["n"].int_value == 33

        # -- LLM: models, token count, chat (plain + streamed), embeddings ------------------
        models = await c.unary(
            "ListModels", lambda: c.llm.ListModels(llm_pb2.ListModelsRequest(tenant_id=tenant), metadata=c.md)
        )
        aliases = {m.alias: m.id for m in models.models if m.alias}
        assert aliases == {"chat": "sim-chat", "embedding": "sim-embed", "image": "sim-image"}
        assert {"sim-chat", "sim-embed-64"} <= {m.id for m in models.models}
        assert {m.provider for m in models.models} == {"openai"}

        messages = [
            llm_pb2.ChatMessage(role="system", content="Be brief."),
            llm_pb2.ChatMessage(role="user", content="Hi there"),
        ]
        counted = await c.unary(
            "CountTokens",
            lambda: c.llm.CountTokens(
                llm_pb2.CountTokensRequest(tenant_id=tenant, messages=messages), metadata=c.md
            ),
        )
        assert counted.prompt_tokens > 0 and counted.method == "estimate"
        chat = await c.unary(
            "CreateChatCompletion",
            lambda: c.llm.CreateChatCompletion(
                llm_pb2.CreateChatCompletionRequest(tenant_id=tenant, messages=messages, max_tokens=50),
                metadata=c.md,
            ),
        )
        assert chat.choices[0].message.content == "Echo: Hi there"
        assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens

        c.calls["StreamChatCompletion"] += 1
        chunks = [
            chunk
            async for chunk in c.llm.StreamChatCompletion(
                llm_pb2.CreateChatCompletionRequest(
                    tenant_id=tenant,
                    model="chat",
                    messages=[llm_pb2.ChatMessage(role="user", content="stream please")],
                ),
                metadata=c.md,
            )
        ]
        assert "".join(ch.delta for ch in chunks) == "Echo: stream please"
        assert not any(ch.HasField("usage") for ch in chunks[:-1])
        final = chunks[-1].usage
        assert (
            final.completion_tokens > 0
            and final.total_tokens == final.prompt_tokens + final.completion_tokens
        )

        embedded = await c.unary(
            "CreateEmbeddings",
            lambda: c.llm.CreateEmbeddings(
                llm_pb2.CreateEmbeddingsRequest(tenant_id=tenant, input=["alpha", "beta", "alpha"]),
                metadata=c.md,
            ),
        )
        assert embedded.model == "sim-embed"
        assert [e.index for e in embedded.data] == [0, 1, 2]
        vectors = [list(e.values) for e in embedded.data]
        assert all(len(v) == 16 for v in vectors)
        assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-5) for v in vectors)
        assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
        prompt_tokens = chat.usage.prompt_tokens + final.prompt_tokens + embedded.usage.prompt_tokens
        completion_tokens = chat.usage.completion_tokens + final.completion_tokens

        # -- usage grouped by method: exactly the calls above, once the spools delivered ----
        expected = dict(c.calls)
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while True:
            usage = await c.metering.QueryUsage(
                metering_pb2.QueryUsageRequest(
                    tenant_id=tenant, meter="api_calls", group_by=["method", "caller", "payer"]
                ),
                metadata=c.md,
            )
            # Other services' calls about the tenant (directory lookups, limits) carry the
            # calling service and payer=platform: not this test's calls.
            by_method: dict[str, int] = {}
            for row in usage.rows:
                if not row.group["caller"]:
                    by_method[row.group["method"]] = by_method.get(row.group["method"], 0) + row.value
            by_service = {
                (row.group["method"], row.group["payer"]) for row in usage.rows if row.group["caller"]
            }
            polls = by_method.pop("QueryUsage", 0)
            assert all(by_method.get(m, 0) <= n for m, n in expected.items()), (by_method, expected)
            assert set(by_method) <= set(expected), by_method
            if by_method == expected and by_service:
                break
            assert time.monotonic() < deadline, f"usage did not arrive: {by_method} != {expected}"
            await asyncio.sleep(0.2)
        c.calls["QueryUsage"] = polls + 1
        assert {payer for _, payer in by_service} == {"platform"}, by_service

        tokens = await c.metering.QueryUsage(
            metering_pb2.QueryUsageRequest(
                tenant_id=tenant,
                meter="llm_prompt_tokens",
                group_by=["model"],
                window=metering_pb2.USAGE_WINDOW_DAY,
            ),
            metadata=c.md,
        )
        c.calls["QueryUsage"] += 1
        by_model = {row.group["model"]: row.value for row in tokens.rows}
        assert by_model == {
            "sim-chat": chat.usage.prompt_tokens + final.prompt_tokens,
            "sim-embed": embedded.usage.prompt_tokens,
        }
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        assert {row.window_start.ToDatetime(tzinfo=UTC) for row in tokens.rows} == {today}

        # -- the invoice: exact decimal strings, total = sum of lines -----------------------
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while True:
            # The operator's CreateTenant is recorded (payer=platform) but not invoiced.
            calls_before = sum(c.calls.values()) - c.calls["CreateTenant"]
            invoice = await c.unary(
                "GetInvoice",
                lambda: c.metering.GetInvoice(
                    metering_pb2.GetInvoiceRequest(
                        tenant_id=tenant, month=datetime.now(UTC).strftime("%Y-%m")
                    ),
                    metadata=c.md,
                ),
            )
            lines = {line.meter: line for line in invoice.line_items}
            if lines["llm_prompt_tokens"].quantity == str(prompt_tokens) and lines[
                "llm_completion_tokens"
            ].quantity == str(completion_tokens):
                break
            assert time.monotonic() < deadline, "LLM token usage did not arrive"
            await asyncio.sleep(0.2)
        assert lines["api_calls"].quantity == str(calls_before)
        assert lines["api_calls"].amount == format(Decimal(calls_before) * Decimal("0.0001"), ".6f")
        total = Decimal(0)
        for line in invoice.line_items:
            amount = (Decimal(line.quantity) * Decimal(line.unit_price)).quantize(
                Decimal("0.000001"), rounding=ROUND_HALF_EVEN
            )
            assert Decimal(line.amount) == amount
            assert "E" not in line.amount and "E" not in line.quantity
            total += Decimal(line.amount)
        assert invoice.total == format(total, "f")
        assert invoice.currency == "USD" and not invoice.final


async def test_grpc_errors_carry_rich_status(mesh: RunningMesh) -> None:
    tenant = f"grpc-err-{uuid.uuid4().hex[:8]}"
    other = f"grpc-oth-{uuid.uuid4().hex[:8]}"
    async with grpc.aio.insecure_channel(mesh.grpc_target) as channel:
        tenants = tenant_pb2_grpc.TenantServiceStub(channel)
        storage = storage_service_pb2_grpc.StorageServiceStub(channel)
        llm = llm_pb2_grpc.LLMServiceStub(channel)
        admin = mesh.metadata(Role.PLATFORM_ADMIN)
        for t in (tenant, other):
            await tenants.CreateTenant(
                tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id=t)), metadata=admin
            )
        await expect_error(
            tenants.CreateTenant(
                tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id=tenant)), metadata=admin
            ),
            grpc.StatusCode.ALREADY_EXISTS,
        )
        md = mesh.metadata(Role.MEMBER, tenant)

        details = await expect_error(
            storage.GetItem(
                items_pb2.GetItemRequest(
                    tenant_id=tenant, collection="no spaces", partition_key="", sort_key="s"
                ),
                metadata=md,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
        )
        assert {v.field for v in details["BadRequest"].field_violations} == {"collection", "partition_key"}
        details = await expect_error(
            storage.PutItem(
                items_pb2.PutItemRequest(
                    tenant_id=tenant,
                    item=item("c", "p", "s", x=items_pb2.AttributeValue(double_value=float("inf"))),
                ),
                metadata=md,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert [v.field for v in details["BadRequest"].field_violations] == [
            "item.attributes['x'].double_value"
        ]

        await expect_error(
            storage.GetItem(
                items_pb2.GetItemRequest(
                    tenant_id=tenant, collection="c", partition_key="p", sort_key="missing"
                ),
                metadata=md,
            ),
            grpc.StatusCode.NOT_FOUND,
            "ITEM_NOT_FOUND",
        )
        put = await storage.PutItem(
            items_pb2.PutItemRequest(tenant_id=tenant, item=item("c", "p", "s")), metadata=md
        )
        await expect_error(
            storage.PutItem(
                items_pb2.PutItemRequest(tenant_id=tenant, item=item("c", "p", "s"), must_not_exist=True),
                metadata=md,
            ),
            grpc.StatusCode.ALREADY_EXISTS,
            "ITEM_EXISTS",
        )
        await expect_error(
            storage.DeleteItem(
                items_pb2.DeleteItemRequest(
                    tenant_id=tenant,
                    collection="c",
                    partition_key="p",
                    sort_key="s",
                    expected_etag=put.etag + "x",
                ),
                metadata=md,
            ),
            grpc.StatusCode.ABORTED,
            "ETAG_MISMATCH",
        )
        details = await expect_error(
            llm.CreateChatCompletion(
                llm_pb2.CreateChatCompletionRequest(
                    tenant_id=tenant,
                    model="sim-ratelimit",
                    messages=[llm_pb2.ChatMessage(role="user", content="x")],
                ),
                metadata=md,
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "LLM_PROVIDER_RATE_LIMITED",
        )
        assert details["RetryInfo"].retry_delay.seconds >= 1
        await expect_error(
            llm.CreateChatCompletion(
                llm_pb2.CreateChatCompletionRequest(
                    tenant_id=tenant,
                    model="no-such-model",
                    messages=[llm_pb2.ChatMessage(role="user", content="x")],
                ),
                metadata=md,
            ),
            grpc.StatusCode.NOT_FOUND,
            "LLM_MODEL_NOT_FOUND",
        )
        # Another tenant's data, and no token at all: refused before any service sees them.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await storage.GetItem(
                items_pb2.GetItemRequest(tenant_id=other, collection="c", partition_key="p", sort_key="s"),
                metadata=md,
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await storage.GetItem(
                items_pb2.GetItemRequest(tenant_id=tenant, collection="c", partition_key="p", sort_key="s")
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
