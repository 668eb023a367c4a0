"""Envoy's tenant check on the FINAL gRPC message: the tenant a request acts on (after path,
query and body are merged by the transcoder) must be the token's tenant; platform-admin is
excepted only on admin routes; internal RPCs are not reachable from outside."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.storage.v1 import items_pb2, objects_pb2, storage_service_pb2_grpc
from makoto.tenant.v1 import directory_pb2, directory_pb2_grpc

from services.common.dev_issuer import mint_token
from services.common.identity import Role
from tests.e2e.envoy_spy import SpyMesh
from tests.support import bearer, client_stream, direct_channel

pytestmark = pytest.mark.e2e

API = "/api/v1"
KEYS = [{"collection": "notes", "partitionKey": "p1", "sortKey": "s1"}]


def auth(spy: SpyMesh, role: Role, tenant: str | None = None) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(spy.settings, role=role, tenant_id=tenant)}"}


def tenants_seen(spy: SpyMesh) -> set[str]:
    out = set()
    for call in spy.rec.calls:
        tenant = getattr(call.request, "tenant_id", "")
        if tenant:
            out.add(tenant)
    return out


async def test_own_tenant_passes(envoy_spy: SpyMesh) -> None:
    envoy_spy.rec.clear()
    async with httpx.AsyncClient(
        base_url=envoy_spy.base_url, headers=auth(envoy_spy, Role.MEMBER, "acme")
    ) as c:
        r = await c.get(f"{API}/tenants/acme/collections/notes/partitions/p1/items/s1")
        assert r.status_code == 200, r.text
        r = await c.post(f"{API}/tenants/acme/items:batchGet", json={"keys": KEYS})
        assert r.status_code == 200, r.text
    assert tenants_seen(envoy_spy) == {"acme"}


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        # another tenant in the path
        ("GET", "/tenants/globex/collections/notes/partitions/p1/items/s1", None),
        ("GET", "/tenants/globex/objects/report.pdf", None),
        ("POST", "/tenants/globex/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
        ("GET", "/tenants/globex/usage", None),
        # ... in the query string, overriding the path variable
        ("GET", "/tenants/acme/collections/notes/partitions/p1/items/s1?tenant_id=globex", None),
        ("GET", "/tenants/acme/collections/notes/partitions/p1/items/s1?tenantId=globex", None),
        ("GET", "/tenants/acme/invoices/2026-01?tenant_id=globex", None),
        # ... in the JSON body, overriding the path variable
        ("POST", "/tenants/acme/items:batchGet", {"tenant_id": "globex", "keys": KEYS}),
        (
            "POST",
            "/tenants/acme/chat/completions",
            {"tenant_id": "globex", "messages": [{"role": "user", "content": "x"}]},
        ),
        # ... through path traversal, which Envoy normalizes into a globex path
        ("GET", "/tenants/acme/objects/../../globex/objects/x", None),
        ("GET", "/tenants/acme/objects/%2e%2e/%2e%2e/globex/objects/x", None),
    ],
)
async def test_other_tenant_is_403_and_never_reaches_a_service(
    envoy_spy: SpyMesh, method: str, url: str, body: dict[str, object] | None
) -> None:
    envoy_spy.rec.clear()
    async with httpx.AsyncClient(
        base_url=envoy_spy.base_url, headers=auth(envoy_spy, Role.TENANT_ADMIN, "acme")
    ) as c:
        r = await c.request(method, API + url, json=body)
    assert r.status_code == 403, (url, r.status_code, r.text)
    assert envoy_spy.rec.calls == [], "the service saw a call it must never see"


async def test_camel_case_body_field_cannot_switch_tenant_either(envoy_spy: SpyMesh) -> None:
    # The transcoder puts both the path's and the body's tenant into the message (field 1
    # twice): Envoy and protobuf may read different ones, so the service refuses two different
    # tenants as ambiguous (400) unless Envoy already refused (403). Only the token's tenant
    # may ever reach a servicer.
    envoy_spy.rec.clear()
    async with httpx.AsyncClient(
        base_url=envoy_spy.base_url, headers=auth(envoy_spy, Role.MEMBER, "acme")
    ) as c:
        r = await c.post(f"{API}/tenants/acme/items:batchGet", json={"tenantId": "globex", "keys": KEYS})
        assert r.status_code in (400, 403), r.text
        r = await c.post(f"{API}/tenants/globex/items:batchGet", json={"tenantId": "acme", "keys": KEYS})
        assert r.status_code in (400, 403), r.text
        # Restating the path's own tenant in the body is not ambiguous.
        r = await c.post(f"{API}/tenants/acme/items:batchGet", json={"tenantId": "acme", "keys": KEYS})
        assert r.status_code == 200, r.text
    assert tenants_seen(envoy_spy) <= {"acme"}


async def test_grpc_other_tenant_is_permission_denied(envoy_spy: SpyMesh) -> None:
    envoy_spy.rec.clear()
    md = tuple(auth(envoy_spy, Role.MEMBER, "acme").items())
    async with grpc.aio.insecure_channel(envoy_spy.grpc_target) as channel:
        stub = storage_service_pb2_grpc.StorageServiceStub(channel)
        ok = await stub.GetItem(
            items_pb2.GetItemRequest(tenant_id="acme", collection="c", partition_key="p", sort_key="s"),
            metadata=md,
        )
        assert ok.etag == "e1"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetItem(
                items_pb2.GetItemRequest(tenant_id="globex", collection="c", partition_key="p", sort_key="s"),
                metadata=md,
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as err:  # an empty tenant is not "any tenant"
            await stub.GetItem(
                items_pb2.GetItemRequest(collection="c", partition_key="p", sort_key="s"), metadata=md
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert tenants_seen(envoy_spy) == {"acme"}


async def _upload(
    parts: list[objects_pb2.UploadObjectRequest],
) -> AsyncIterator[objects_pb2.UploadObjectRequest]:
    for part in parts:
        yield part


async def test_client_streaming_upload_checks_the_header_message(envoy_spy: SpyMesh) -> None:
    envoy_spy.rec.clear()
    md = tuple(auth(envoy_spy, Role.MEMBER, "acme").items())

    def header(tenant: str) -> objects_pb2.UploadObjectRequest:
        return objects_pb2.UploadObjectRequest(
            header=objects_pb2.UploadObjectHeader(
                tenant_id=tenant, key="up/a.bin", content_type="application/x-test"
            )
        )

    chunk = objects_pb2.UploadObjectRequest(chunk=b"z" * 1024 * 1024)  # the largest chunk allowed
    async with grpc.aio.insecure_channel(envoy_spy.grpc_target) as channel:
        stub = storage_service_pb2_grpc.StorageServiceStub(channel)
        meta = await stub.UploadObject(_upload([header("acme"), chunk, chunk]), metadata=md)
        assert meta.size_bytes == 2 * 1024 * 1024
        # Refused streams use a small chunk: with a 1 MiB chunk still being written when Envoy
        # answers, grpc core occasionally reports the reset as INTERNAL instead of the status.
        small = objects_pb2.UploadObjectRequest(chunk=b"z" * 1024)
        for parts in ([header("globex"), small], [small, header("globex")], [small]):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client_stream(stub.UploadObject, parts, md)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert envoy_spy.rec.methods() == ["UploadObject"]
    assert tenants_seen(envoy_spy) == {"acme"}


async def test_platform_admin_only_on_admin_routes(envoy_spy: SpyMesh) -> None:
    envoy_spy.rec.clear()
    admin = auth(envoy_spy, Role.PLATFORM_ADMIN)
    async with httpx.AsyncClient(base_url=envoy_spy.base_url, headers=admin) as c:
        assert (await c.get(f"{API}/admin/tenants")).status_code == 200
        assert (await c.get(f"{API}/tenants/globex")).status_code == 200  # GetTenant
        assert (await c.get(f"{API}/tenants/globex/users")).status_code == 200  # ListUsers
        assert (await c.get(f"{API}/tenants/globex/usage", params={"meter": "api_calls"})).status_code == 200
        assert (await c.get(f"{API}/tenants/globex/invoices/2026-01")).status_code == 200
        assert (await c.get(f"{API}/admin/price-plans/default")).status_code == 200
        seen_ok = len(envoy_spy.rec.calls)
        # ... but not another tenant's data.
        for url in (
            "/tenants/globex/collections/notes/partitions/p1/items/s1",
            "/tenants/globex/objects/a.txt",
            "/tenants/globex/models",
        ):
            r = await c.get(API + url)
            assert r.status_code == 403, (url, r.text)
    assert len(envoy_spy.rec.calls) == seen_ok == 6


async def test_tenant_roles_cannot_use_admin_routes(envoy_spy: SpyMesh) -> None:
    envoy_spy.rec.clear()
    async with httpx.AsyncClient(
        base_url=envoy_spy.base_url, headers=auth(envoy_spy, Role.TENANT_ADMIN, "acme")
    ) as c:
        assert (await c.get(f"{API}/admin/tenants")).status_code == 403
        r = await c.post(f"{API}/admin/tenants", json={"tenantId": "mine"})
        assert r.status_code == 403
        assert (await c.get(f"{API}/admin/price-plans/default")).status_code == 403
        # A tenant's own reads on tenant-or-admin routes are fine.
        assert (await c.get(f"{API}/tenants/acme")).status_code == 200
        assert (await c.get(f"{API}/tenants/globex")).status_code == 403
    assert envoy_spy.rec.methods() == ["GetTenant"]


async def test_internal_rpcs_are_not_reachable_through_envoy(envoy_spy: SpyMesh) -> None:
    envoy_spy.rec.clear()
    service = bearer(envoy_spy.settings, Role.SERVICE)
    async with grpc.aio.insecure_channel(envoy_spy.grpc_target) as channel:
        directory = directory_pb2_grpc.TenantDirectoryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await directory.ResolveTenant(
                directory_pb2.ResolveTenantRequest(tenant_id="acme"), metadata=service
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        metering = metering_pb2_grpc.MeteringServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await metering.RecordUsage(metering_pb2.RecordUsageRequest(), metadata=service)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Nor is there any REST route to them.
    async with httpx.AsyncClient(base_url=envoy_spy.base_url, headers=dict(service)) as c:
        r = await c.post("/makoto.tenant.v1.TenantDirectoryService/ResolveTenant", json={"tenantId": "acme"})
        assert r.status_code in (403, 404)
    assert envoy_spy.rec.calls == []
    # The same call directly on the service port works for a service token: it is Envoy that refuses.
    async with direct_channel(envoy_spy.settings.address("tenant")) as channel:
        directory = directory_pb2_grpc.TenantDirectoryServiceStub(channel)
        answer = await directory.ResolveTenant(
            directory_pb2.ResolveTenantRequest(tenant_id="acme"), metadata=service
        )
        assert answer.tenant_id == "acme"
