"""Identity comes from the verified token only. Headers a client adds — x-makoto-*, x-tenant-id,
x-jwt-payload, x-user-id, forwarded-user headers, a second Authorization header — never change
who the caller is, through Envoy or directly on a service port."""

from __future__ import annotations

import base64
import json
import uuid

import grpc
import httpx
import pytest
from makoto.storage.v1 import items_pb2
from makoto.tenant.v1 import tenant_pb2

from services.common.identity import ROLE_CLAIM, TENANT_CLAIM, Role
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import API, bad_token, create_tenant, items_on_disk, refused, stubs
from tests.support import direct_channel

pytestmark = pytest.mark.e2e


def spoofed(victim: str) -> dict[str, str]:
    payload = {TENANT_CLAIM: victim, ROLE_CLAIM: "platform-admin", "sub": "root"}
    encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return {
        "x-makoto-tenant-id": victim,
        "x-makoto-tenant": victim,
        "x-makoto-role": "platform-admin",
        "x-makoto-principal": "root",
        "x-tenant-id": victim,
        "x-jwt-payload": encoded,
        "x-user-id": "root",
        "x-role": "platform-admin",
        "x-forwarded-user": "root",
        "x-auth-request-user": "root",
        "x-authenticated-user": "root",
    }


@pytest.fixture(scope="module")
def pair(mesh: RunningMesh) -> tuple[str, str]:
    return create_tenant(mesh, "sec-hdr-a"), create_tenant(mesh, "sec-hdr-b")


async def test_spoofed_headers_through_envoy(mesh: RunningMesh, pair: tuple[str, str]) -> None:
    a, b = pair
    planted = f"sec-hdr-new-{uuid.uuid4().hex[:6]}"
    headers = {**mesh.headers(Role.MEMBER, a), **spoofed(b)}
    item = "collections/notes/partitions/p/items/spoof"
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        # Still tenant A, still a member.
        assert (await c.get(f"{API}/tenants/{b}/{item}", headers=headers)).status_code == 403
        r = await c.put(f"{API}/tenants/{b}/{item}", json={"attributes": {}}, headers=headers)
        assert r.status_code == 403
        r = await c.post(f"{API}/admin/tenants", json={"tenantId": planted}, headers=headers)
        assert r.status_code == 403
        assert (await c.get(f"{API}/admin/tenants", headers=headers)).status_code == 403
        # What A may do, A still does — in A.
        r = await c.put(
            f"{API}/tenants/{a}/{item}", json={"attributes": {"by": {"stringValue": "a"}}}, headers=headers
        )
        assert r.status_code == 200, r.text
        # Without a token the headers are worth nothing at all.
        r = await c.get(f"{API}/tenants/{b}/{item}", headers=spoofed(b))
        assert r.status_code == 401
        r = await c.post(f"{API}/admin/tenants", json={"tenantId": planted}, headers=spoofed(b))
        assert r.status_code == 401
        assert (
            await c.get(f"{API}/tenants/{planted}", headers=mesh.headers(Role.PLATFORM_ADMIN))
        ).status_code == 404
    assert ("notes", "p", "spoof") in items_on_disk(mesh, a)
    assert ("notes", "p", "spoof") not in items_on_disk(mesh, b)


async def test_spoofed_metadata_on_service_ports(mesh: RunningMesh, pair: tuple[str, str]) -> None:
    a, b = pair
    planted = f"sec-hdr-new-{uuid.uuid4().hex[:6]}"
    fake = tuple(spoofed(b).items())
    member_a = mesh.metadata(Role.MEMBER, a)
    create = tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id=planted))
    get_b = items_pb2.GetItemRequest(tenant_id=b, collection="notes", partition_key="p", sort_key="s")
    put_b = items_pb2.PutItemRequest(
        tenant_id=b, item=items_pb2.Item(collection="notes", partition_key="p", sort_key="planted")
    )
    forged_admin = f"Bearer {bad_token(mesh, 'alg-none', Role.PLATFORM_ADMIN, None)}"
    async with direct_channel(mesh.address("tenant")) as ch:
        s = stubs(ch)
        await refused(s.tenants.CreateTenant(create, metadata=fake), grpc.StatusCode.UNAUTHENTICATED)
        await refused(
            s.tenants.CreateTenant(create, metadata=(*member_a, *fake)), grpc.StatusCode.PERMISSION_DENIED
        )
        # Two Authorization headers: refused as such, whichever comes first (as Envoy refuses them).
        await refused(
            s.tenants.CreateTenant(create, metadata=(("authorization", forged_admin), *member_a)),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        await refused(
            s.tenants.CreateTenant(create, metadata=(*member_a, ("authorization", forged_admin))),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    async with direct_channel(mesh.address("storage")) as ch:
        s = stubs(ch)
        await refused(s.storage.GetItem(get_b, metadata=fake), grpc.StatusCode.UNAUTHENTICATED)
        await refused(
            s.storage.GetItem(get_b, metadata=(*member_a, *fake)), grpc.StatusCode.PERMISSION_DENIED
        )
        await refused(
            s.storage.PutItem(put_b, metadata=(*member_a, *fake)), grpc.StatusCode.PERMISSION_DENIED
        )
    # The same tricks through Envoy's gRPC port.
    async with grpc.aio.insecure_channel(mesh.grpc_target) as ch:
        s = stubs(ch)
        await refused(s.tenants.CreateTenant(create, metadata=fake), grpc.StatusCode.UNAUTHENTICATED)
        await refused(
            s.tenants.CreateTenant(create, metadata=(*member_a, *fake)), grpc.StatusCode.PERMISSION_DENIED
        )
        for metadata in (
            (("authorization", forged_admin), *member_a),
            (*member_a, ("authorization", forged_admin)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await s.tenants.CreateTenant(create, metadata=metadata)
            assert caught.value.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        await refused(
            s.storage.PutItem(put_b, metadata=(*member_a, *fake)), grpc.StatusCode.PERMISSION_DENIED
        )
        admin = mesh.metadata(Role.PLATFORM_ADMIN)
        await refused(
            s.tenants.GetTenant(tenant_pb2.GetTenantRequest(tenant_id=planted), metadata=admin),
            grpc.StatusCode.NOT_FOUND,
        )
    assert ("notes", "p", "planted") not in items_on_disk(mesh, b)
