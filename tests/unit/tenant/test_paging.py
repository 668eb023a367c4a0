"""ListTenants / ListUsers pagination: ordered by id, stable opaque tokens bound to their query,
default page size 50, maximum 1000."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from makoto.tenant.v1 import tenant_pb2

from services.common import paging
from services.common.errors import InvalidArgument
from tests.unit.tenant.conftest import TenantClient, field_violations, rpc_error


async def _all_pages(client: TenantClient, page_size: int, show_deleted: bool = False) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        resp = await client.tenants.ListTenants(
            tenant_pb2.ListTenantsRequest(page_size=page_size, page_token=token, show_deleted=show_deleted),
            metadata=client.admin,
        )
        pages.append([t.tenant_id for t in resp.tenants])
        token = resp.next_page_token
        if not token:
            return pages


async def test_tenants_page_in_id_order(client: TenantClient) -> None:
    ids = [f"tenant-{c}" for c in "gbfacde"]
    for tenant_id in ids:
        await client.create(tenant_id)
    assert await _all_pages(client, 3) == [
        ["tenant-a", "tenant-b", "tenant-c"],
        ["tenant-d", "tenant-e", "tenant-f"],
        ["tenant-g"],
    ]
    # an exact multiple ends without an empty trailing page
    assert await _all_pages(client, 7) == [sorted(ids)]

    # stable under concurrent change: a deletion or insert behind the cursor moves nothing
    first = await client.tenants.ListTenants(
        tenant_pb2.ListTenantsRequest(page_size=3), metadata=client.admin
    )
    await client.tenants.DeleteTenant(
        tenant_pb2.DeleteTenantRequest(tenant_id="tenant-b"), metadata=client.admin
    )
    await client.create("tenant-aa")
    second = await client.tenants.ListTenants(
        tenant_pb2.ListTenantsRequest(page_size=3, page_token=first.next_page_token), metadata=client.admin
    )
    assert [t.tenant_id for t in second.tenants] == ["tenant-d", "tenant-e", "tenant-f"]

    with_deleted = await _all_pages(client, 100, show_deleted=True)
    assert "tenant-b" in with_deleted[0]
    assert "tenant-b" not in (await _all_pages(client, 100))[0]


async def test_foreign_or_forged_tokens_are_invalid_argument(client: TenantClient) -> None:
    for tenant_id in ("tok-a", "tok-b", "tok-c"):
        await client.create(tenant_id)
    first = await client.tenants.ListTenants(
        tenant_pb2.ListTenantsRequest(page_size=1), metadata=client.admin
    )
    assert first.next_page_token
    # the token continues only the query it came from
    err = await rpc_error(
        client.tenants.ListTenants(
            tenant_pb2.ListTenantsRequest(page_size=1, page_token=first.next_page_token, show_deleted=True),
            metadata=client.admin,
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in field_violations(err)
    err = await rpc_error(
        client.tenants.ListTenants(
            tenant_pb2.ListTenantsRequest(page_token="not-a-token!"), metadata=client.admin
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = await rpc_error(
        client.tenants.ListTenants(tenant_pb2.ListTenantsRequest(page_size=1001), metadata=client.admin)
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_size" in field_violations(err)


async def test_users_default_page_is_50(client: TenantClient) -> None:
    await client.create("crowd")
    invites = [
        client.tenants.InviteUser(
            tenant_pb2.InviteUserRequest(
                tenant_id="crowd",
                user=tenant_pb2.TenantUser(email=f"user{i}@crowd.test", role=tenant_pb2.USER_ROLE_MEMBER),
            ),
            metadata=client.admin,
        )
        for i in range(55)
    ]
    made = await asyncio.gather(*invites)
    first = await client.tenants.ListUsers(
        tenant_pb2.ListUsersRequest(tenant_id="crowd"), metadata=client.admin
    )
    assert len(first.users) == 50
    assert first.next_page_token
    rest = await client.tenants.ListUsers(
        tenant_pb2.ListUsersRequest(tenant_id="crowd", page_token=first.next_page_token),
        metadata=client.admin,
    )
    assert len(rest.users) == 5 and rest.next_page_token == ""
    listed = [u.user_id for u in [*first.users, *rest.users]]
    assert listed == sorted(u.user_id for u in made)

    # a token of one tenant's listing is no token for another's
    await client.create("other-crowd")
    err = await rpc_error(
        client.tenants.ListUsers(
            tenant_pb2.ListUsersRequest(tenant_id="other-crowd", page_token=first.next_page_token),
            metadata=client.admin,
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_page_size_bounds_and_token_roundtrip() -> None:
    assert paging.page_size(0) == 50
    assert paging.page_size(7) == 7
    assert paging.page_size(5000) == 1000
    token = paging.encode("tenant-x", "q1")
    assert paging.decode(token, "q1") == "tenant-x"
    assert paging.decode("", "q1") is None
    with pytest.raises(InvalidArgument):
        paging.decode(token, "q2")
    for junk in ("%%%", "bnVsbA", "W10"):  # not base64; "null"; "[]"
        with pytest.raises(InvalidArgument):
            paging.decode(junk, "q1")
