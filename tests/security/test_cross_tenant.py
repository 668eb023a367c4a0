"""A valid token only ever acts for its own tenant and role.

* Directly on each service port (Envoy bypassed), tenant A's token naming tenant B is
  PERMISSION_DENIED — for unary, client-streaming and server-streaming RPCs.
* Through Envoy, B's id in the path, the query string or the JSON body is 403.
* Members and tenant-admins cannot call admin RPCs; nobody but `service` can call the internal
  ones (ResolveTenant, RecordUsage), not even a platform-admin.

Afterwards B's data, tenant record, users, price plans and usage are exactly as before."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import pytest
from google.api import httpbody_pb2
from makoto.llm.v1 import llm_pb2
from makoto.metering.v1 import metering_pb2
from makoto.storage.v1 import items_pb2, objects_pb2
from makoto.tenant.v1 import directory_pb2, tenant_pb2

from services.common.identity import Role
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import (
    API,
    create_tenant,
    error_info,
    items_on_disk,
    object_keys_on_disk,
    refused,
    stubs,
    usage_by_method,
    wait_for_method,
)
from tests.support import client_stream, direct_channel

pytestmark = pytest.mark.e2e

DENIED = grpc.StatusCode.PERMISSION_DENIED
SECRET = "b-private-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def pair(mesh: RunningMesh) -> tuple[str, str]:
    """Tenant A (the attacker's) and tenant B (the victim) with one object, one item, one user."""
    a, b = create_tenant(mesh, "sec-a"), create_tenant(mesh, "sec-b")
    with httpx.Client(base_url=mesh.base_url, headers=mesh.headers(Role.TENANT_ADMIN, b), timeout=30) as c:
        r = c.put(
            f"{API}/tenants/{b}/collections/notes/partitions/p/items/s",
            json={"attributes": {"secret": {"stringValue": SECRET}}},
        )
        assert r.status_code == 200, r.text
        r = c.put(
            f"{API}/tenants/{b}/objects/private.txt",
            content=SECRET.encode(),
            headers={"content-type": "text/plain"},
        )
        assert r.status_code == 200, r.text
        r = c.post(
            f"{API}/tenants/{b}/users", json={"email": "owner@b.example", "role": "USER_ROLE_TENANT_ADMIN"}
        )
        assert r.status_code == 200, r.text
    return a, b


def snapshot(mesh: RunningMesh, tenant: str) -> dict[str, Any]:
    """B as seen by its own admin and by the platform, plus its files on disk."""
    with httpx.Client(base_url=mesh.base_url, timeout=30) as c:
        own = mesh.headers(Role.TENANT_ADMIN, tenant)
        admin = mesh.headers(Role.PLATFORM_ADMIN)
        record = c.get(f"{API}/tenants/{tenant}", headers=admin).json()
        return {
            "tenant": (record["state"], record["etag"], record["displayName"]),
            "items": c.get(
                f"{API}/tenants/{tenant}/collections/notes/partitions/p/items", headers=own
            ).json(),
            "objects": c.get(f"{API}/tenants/{tenant}/objects", headers=own).json(),
            "content": c.get(f"{API}/tenants/{tenant}/objects/private.txt", headers=own).content,
            "users": c.get(f"{API}/tenants/{tenant}/users", headers=own).json(),
            "disk-items": items_on_disk(mesh, tenant),
            "disk-objects": object_keys_on_disk(mesh, tenant),
        }


def _header(tenant: str, key: str) -> objects_pb2.UploadObjectRequest:
    return objects_pb2.UploadObjectRequest(header=objects_pb2.UploadObjectHeader(tenant_id=tenant, key=key))


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


def attempts(md: tuple[tuple[str, str], ...], a: str, b: str) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    """Calls naming tenant B, keyed "<service>-<what>", each given the stubs of that service."""
    chat = llm_pb2.CreateChatCompletionRequest(
        tenant_id=b, messages=[llm_pb2.ChatMessage(role="user", content="on B's bill")]
    )
    b_item = items_pb2.Item(
        collection="notes",
        partition_key="p",
        sort_key="s",
        attributes={"secret": items_pb2.AttributeValue(string_value="pwned")},
    )
    b_key = items_pb2.ItemKey(collection="notes", partition_key="p", sort_key="s")
    mole = tenant_pb2.TenantUser(email="mole@a.example", role=tenant_pb2.USER_ROLE_TENANT_ADMIN)
    return {
        "tenant-get": lambda s: s.tenants.GetTenant(tenant_pb2.GetTenantRequest(tenant_id=b), metadata=md),
        "tenant-users": lambda s: s.tenants.ListUsers(tenant_pb2.ListUsersRequest(tenant_id=b), metadata=md),
        "tenant-invite": lambda s: s.tenants.InviteUser(
            tenant_pb2.InviteUserRequest(tenant_id=b, user=mole), metadata=md
        ),
        "storage-get": lambda s: s.storage.GetItem(
            items_pb2.GetItemRequest(tenant_id=b, collection="notes", partition_key="p", sort_key="s"),
            metadata=md,
        ),
        "storage-put": lambda s: s.storage.PutItem(
            items_pb2.PutItemRequest(tenant_id=b, item=b_item), metadata=md
        ),
        "storage-delete-object": lambda s: s.storage.DeleteObject(
            objects_pb2.DeleteObjectRequest(tenant_id=b, key="private.txt"), metadata=md
        ),
        "storage-put-object": lambda s: s.storage.PutObjectContent(
            objects_pb2.PutObjectContentRequest(
                tenant_id=b,
                key="private.txt",
                content=httpbody_pb2.HttpBody(content_type="text/plain", data=b"x"),
            ),
            metadata=md,
        ),
        "storage-batch": lambda s: s.storage.BatchWriteItems(
            items_pb2.BatchWriteItemsRequest(tenant_id=b, writes=[items_pb2.BatchWrite(delete=b_key)]),
            metadata=md,
        ),
        "storage-upload": lambda s: client_stream(
            s.storage.UploadObject,
            [_header(b, "private.txt"), objects_pb2.UploadObjectRequest(chunk=b"x")],
            md,
        ),
        # A stream that starts with A's own header and slips in B's: every message is checked.
        "storage-upload-second-header": lambda s: client_stream(
            s.storage.UploadObject, [_header(a, "mine.txt"), _header(b, "private.txt")], md
        ),
        "storage-download": lambda s: _drain(
            s.storage.DownloadObject(
                objects_pb2.DownloadObjectRequest(tenant_id=b, key="private.txt"), metadata=md
            )
        ),
        "llm-chat": lambda s: s.llm.CreateChatCompletion(chat, metadata=md),
        "llm-stream": lambda s: _drain(s.llm.StreamChatCompletion(chat, metadata=md)),
        "llm-models": lambda s: s.llm.ListModels(llm_pb2.ListModelsRequest(tenant_id=b), metadata=md),
        "metering-usage": lambda s: s.metering.QueryUsage(
            metering_pb2.QueryUsageRequest(tenant_id=b, meter="api_calls"), metadata=md
        ),
        "metering-invoice": lambda s: s.metering.GetInvoice(
            metering_pb2.GetInvoiceRequest(tenant_id=b, month="2026-01"), metadata=md
        ),
    }


# Methods B itself never calls in this module, and B's own calls of the others (the fixture).
ATTACK_ONLY = (
    "GetItem",
    "DeleteObject",
    "BatchWriteItems",
    "UploadObject",
    "DownloadObject",
    "CreateChatCompletion",
    "StreamChatCompletion",
    "ListModels",
    "GetInvoice",
)
B_OWN = {"PutItem": 1, "PutObjectContent": 1, "InviteUser": 1}


async def test_other_tenant_on_every_service_port_is_permission_denied(
    mesh: RunningMesh, pair: tuple[str, str]
) -> None:
    a, b = pair
    before = snapshot(mesh, b)
    for role in (Role.TENANT_ADMIN, Role.MEMBER):
        for name, attempt in attempts(mesh.metadata(role, a), a, b).items():
            async with direct_channel(mesh.address(name.split("-", 1)[0])) as channel:
                err = await refused(attempt(stubs(channel)), DENIED)
            assert SECRET not in (err.details() or ""), name
            assert error_info(err).domain == "makoto", name

    # A sentinel through each service that spools usage: once it is metered, anything the
    # refused calls might have recorded for B would have arrived too. They are billed to nobody.
    own = mesh.metadata(Role.TENANT_ADMIN, b)
    async with direct_channel(mesh.address("tenant")) as channel:
        await refused(
            stubs(channel).tenants.RemoveUser(
                tenant_pb2.RemoveUserRequest(tenant_id=b, user_id="nobody"), metadata=own
            ),
            grpc.StatusCode.NOT_FOUND,
        )
    async with direct_channel(mesh.address("storage")) as channel:
        await refused(
            stubs(channel).storage.GetObjectMetadata(
                objects_pb2.GetObjectMetadataRequest(tenant_id=b, key="sentinel"), metadata=own
            ),
            grpc.StatusCode.NOT_FOUND,
        )
    async with direct_channel(mesh.address("llm")) as channel:
        await stubs(channel).llm.CountTokens(
            llm_pb2.CountTokensRequest(tenant_id=b, messages=[llm_pb2.ChatMessage(role="user", content="x")]),
            metadata=own,
        )
    for sentinel in ("RemoveUser", "GetObjectMetadata", "CountTokens"):
        usage = await wait_for_method(mesh, b, sentinel)
    assert {m: usage.get(m, 0) for m in ATTACK_ONLY} == dict.fromkeys(ATTACK_ONLY, 0), usage
    assert {m: usage.get(m, 0) for m in B_OWN} == B_OWN, usage
    assert await usage_by_method(mesh, b, "llm_prompt_tokens") == {}
    after = snapshot(mesh, b)
    assert after == before
    assert after["content"] == SECRET.encode()
    assert [u["email"] for u in after["users"]["users"]] == ["owner@b.example"]
    assert "mine.txt" not in object_keys_on_disk(mesh, a)


# (method, path under /api/v1 with {a} = the caller's tenant and {b} = the victim, body)
ATTEMPTS: list[tuple[str, str, Any]] = [
    # B in the path
    ("GET", "/tenants/{b}/objects/private.txt", None),
    ("PUT", "/tenants/{b}/objects/private.txt", "raw"),
    ("DELETE", "/tenants/{b}/objects/private.txt", None),
    ("GET", "/tenants/{b}/objects", None),
    ("PUT", "/tenants/{b}/collections/notes/partitions/p/items/s", {"attributes": {}}),
    ("DELETE", "/tenants/{b}/collections/notes/partitions/p/items/s", None),
    ("POST", "/tenants/{b}/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
    ("GET", "/tenants/{b}/usage", None),
    ("GET", "/tenants/{b}/invoices/2026-01", None),
    ("GET", "/tenants/{b}/users", None),
    # B in the query string, A in the path
    ("GET", "/tenants/{a}/objects/private.txt?tenant_id={b}", None),
    ("PUT", "/tenants/{a}/objects/private.txt?tenant_id={b}", "raw"),
    ("DELETE", "/tenants/{a}/objects/private.txt?tenantId={b}", None),
    ("GET", "/tenants/{a}/objects?tenant_id={b}", None),
    ("DELETE", "/tenants/{a}/collections/notes/partitions/p/items/s?tenant_id={b}", None),
    ("GET", "/tenants/{a}/usage?tenant_id={b}&meter=api_calls", None),
    (
        "POST",
        "/tenants/{a}/chat/completions:stream?tenant_id={b}",
        {"messages": [{"role": "user", "content": "x"}]},
    ),
    # B in the JSON body, A in the path
    (
        "POST",
        "/tenants/{a}/chat/completions",
        {"tenant_id": "{b}", "messages": [{"role": "user", "content": "x"}]},
    ),
    ("POST", "/tenants/{a}/embeddings", {"tenant_id": "{b}", "input": ["x"]}),
    (
        "POST",
        "/tenants/{a}/items:transactWrite",
        {
            "tenant_id": "{b}",
            "writes": [{"delete": {"key": {"collection": "notes", "partitionKey": "p", "sortKey": "s"}}}],
        },
    ),
    (
        "POST",
        "/tenants/{a}/object-urls",
        {"tenant_id": "{b}", "key": "private.txt", "method": "SIGNED_URL_METHOD_GET"},
    ),
    # B through path normalization
    ("GET", "/tenants/{a}/objects/../../{b}/objects/private.txt", None),
    ("DELETE", "/tenants/{a}/objects/%2e%2e/%2e%2e/{b}/objects/private.txt", None),
]


async def test_other_tenant_in_path_query_or_body_is_403(mesh: RunningMesh, pair: tuple[str, str]) -> None:
    a, b = pair
    before = snapshot(mesh, b)
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        for method, path, body in ATTEMPTS:
            url = API + path.format(a=a, b=b)
            kwargs: dict[str, Any] = {}
            headers = mesh.headers(Role.TENANT_ADMIN, a)
            if body == "raw":
                kwargs = {"content": b"overwritten"}
                headers["content-type"] = "text/plain"
            elif body is not None:
                kwargs = {"json": {k: (v.format(b=b) if isinstance(v, str) else v) for k, v in body.items()}}
            r = await c.request(method, url, headers=headers, **kwargs)
            assert r.status_code == 403, (method, url, r.status_code, r.text)
            assert SECRET not in r.text
    assert snapshot(mesh, b) == before


async def test_members_cannot_call_admin_rpcs(mesh: RunningMesh, pair: tuple[str, str]) -> None:
    a, b = pair
    new = f"sec-new-{uuid.uuid4().hex[:8]}"
    plan = f"cheap-{uuid.uuid4().hex[:8]}"
    before = snapshot(mesh, b)
    for role in (Role.MEMBER, Role.TENANT_ADMIN):
        for target in ("direct", "envoy"):
            md = mesh.metadata(role, b)  # even for their own tenant
            async with mesh.channel(mesh.address("tenant") if target == "direct" else mesh.grpc_target) as ch:
                s = stubs(ch)
                calls = [
                    s.tenants.CreateTenant(
                        tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id=new)), metadata=md
                    ),
                    s.tenants.SuspendTenant(tenant_pb2.SuspendTenantRequest(tenant_id=b), metadata=md),
                    s.tenants.DeleteTenant(tenant_pb2.DeleteTenantRequest(tenant_id=a), metadata=md),
                    s.tenants.UpdateTenant(
                        tenant_pb2.UpdateTenantRequest(
                            tenant=tenant_pb2.Tenant(tenant_id=b, display_name="mine")
                        ),
                        metadata=md,
                    ),
                    s.tenants.ListTenants(tenant_pb2.ListTenantsRequest(), metadata=md),
                ]
                for call in calls:
                    await refused(call, DENIED)
            async with mesh.channel(
                mesh.address("metering") if target == "direct" else mesh.grpc_target
            ) as ch:
                s = stubs(ch)
                await refused(
                    s.metering.SetPricePlan(
                        metering_pb2.SetPricePlanRequest(
                            plan=metering_pb2.PricePlan(
                                plan_id="default",
                                currency="USD",
                                prices=[metering_pb2.MeterPrice(meter="api_calls", unit_price="0")],
                            )
                        ),
                        metadata=md,
                    ),
                    DENIED,
                )
                await refused(
                    s.metering.SetPricePlan(
                        metering_pb2.SetPricePlanRequest(
                            plan=metering_pb2.PricePlan(plan_id=plan, currency="USD")
                        ),
                        metadata=md,
                    ),
                    DENIED,
                )
    # A member cannot manage users either (tenant-admin only), even in its own tenant.
    async with direct_channel(mesh.address("tenant")) as ch:
        await refused(
            stubs(ch).tenants.InviteUser(
                tenant_pb2.InviteUserRequest(
                    tenant_id=b,
                    user=tenant_pb2.TenantUser(
                        email="self@b.example", role=tenant_pb2.USER_ROLE_TENANT_ADMIN
                    ),
                ),
                metadata=mesh.metadata(Role.MEMBER, b),
            ),
            DENIED,
        )
    admin = mesh.metadata(Role.PLATFORM_ADMIN)
    async with grpc.aio.insecure_channel(mesh.grpc_target) as ch:
        s = stubs(ch)
        await refused(
            s.tenants.GetTenant(tenant_pb2.GetTenantRequest(tenant_id=new), metadata=admin),
            grpc.StatusCode.NOT_FOUND,
        )
        assert (
            await s.tenants.GetTenant(tenant_pb2.GetTenantRequest(tenant_id=a), metadata=admin)
        ).state == (tenant_pb2.TENANT_STATE_ACTIVE)
        default = await s.metering.GetPricePlan(
            metering_pb2.GetPricePlanRequest(plan_id="default"), metadata=admin
        )
        assert {p.meter: p.unit_price for p in default.prices} == {
            "api_calls": "0.0001",
            "storage_bytes": "0.023",
            "llm_prompt_tokens": "0.00002",
            "llm_completion_tokens": "0.00002",
        }
        await refused(
            s.metering.GetPricePlan(metering_pb2.GetPricePlanRequest(plan_id=plan), metadata=admin),
            grpc.StatusCode.NOT_FOUND,
        )
    assert snapshot(mesh, b) == before


async def test_internal_rpcs_only_for_service_tokens(mesh: RunningMesh, pair: tuple[str, str]) -> None:
    a, b = pair
    meter = f"injected_{uuid.uuid4().hex[:8]}"
    event = metering_pb2.UsageEvent(
        id=uuid.uuid4().hex, source="attacker", type=meter, subject=b, value=10**6
    )
    event.time.GetCurrentTime()
    for md in (
        mesh.metadata(Role.MEMBER, b),
        mesh.metadata(Role.TENANT_ADMIN, a),
        mesh.metadata(Role.PLATFORM_ADMIN),
    ):
        async with direct_channel(mesh.address("tenant")) as ch:
            await refused(
                stubs(ch).directory.ResolveTenant(
                    directory_pb2.ResolveTenantRequest(tenant_id=b), metadata=md
                ),
                DENIED,
            )
        async with direct_channel(mesh.address("metering")) as ch:
            await refused(
                stubs(ch).metering.RecordUsage(metering_pb2.RecordUsageRequest(events=[event]), metadata=md),
                DENIED,
            )
    assert await usage_by_method(mesh, b, meter) == {}
    # The same calls with a service token work: it is the role that is refused, not the call.
    async with direct_channel(mesh.address("tenant")) as ch:
        resolved = await stubs(ch).directory.ResolveTenant(
            directory_pb2.ResolveTenantRequest(tenant_id=b), metadata=mesh.metadata(Role.SERVICE)
        )
    assert resolved.tenant_id == b
    assert resolved.bindings.llm.api_key_secret_ref == "local://llm-simulator-key"
