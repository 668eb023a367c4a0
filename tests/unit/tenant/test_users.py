"""Tenant users through the local identity provider: invite, list, remove, and who may do it."""

from __future__ import annotations

import grpc
import sqlalchemy as sa
from makoto.tenant.v1 import tenant_pb2

from services.tenant.db import make_engine
from services.tenant.schema import users
from tests.unit.tenant.conftest import TenantClient, error_info, rpc_error

MEMBER = tenant_pb2.USER_ROLE_MEMBER
ADMIN = tenant_pb2.USER_ROLE_TENANT_ADMIN


def _invite(tenant_id: str, email: str, role: int = MEMBER) -> tenant_pb2.InviteUserRequest:
    return tenant_pb2.InviteUserRequest(
        tenant_id=tenant_id, user=tenant_pb2.TenantUser(email=email, role=role)
    )


async def test_invite_list_remove(client: TenantClient, db_url: str) -> None:
    await client.create("team")
    as_admin = client.tenant_admin("team")
    alice = await client.tenants.InviteUser(_invite("team", "Alice@Team.test", ADMIN), metadata=as_admin)
    assert alice.user_id and alice.tenant_id == "team"
    assert alice.email == "alice@team.test" and alice.role == ADMIN
    assert alice.create_time.seconds > 0
    bob = await client.tenants.InviteUser(_invite("team", "bob@team.test"), metadata=client.admin)

    # the same address again (any case) is ALREADY_EXISTS
    err = await rpc_error(client.tenants.InviteUser(_invite("team", "ALICE@team.test"), metadata=as_admin))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS

    # members may list their tenant's users
    listed = await client.tenants.ListUsers(
        tenant_pb2.ListUsersRequest(tenant_id="team"), metadata=client.member("team")
    )
    assert {(u.email, u.role) for u in listed.users} == {
        ("alice@team.test", ADMIN),
        ("bob@team.test", MEMBER),
    }

    await client.tenants.RemoveUser(
        tenant_pb2.RemoveUserRequest(tenant_id="team", user_id=bob.user_id), metadata=as_admin
    )
    err = await rpc_error(
        client.tenants.RemoveUser(
            tenant_pb2.RemoveUserRequest(tenant_id="team", user_id=bob.user_id), metadata=as_admin
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(err).reason == "USER_NOT_FOUND"
    listed = await client.tenants.ListUsers(tenant_pb2.ListUsersRequest(tenant_id="team"), metadata=as_admin)
    assert [u.user_id for u in listed.users] == [alice.user_id]

    # offboarding removes the tenant's users
    await client.tenants.DeleteTenant(tenant_pb2.DeleteTenantRequest(tenant_id="team"), metadata=client.admin)
    err = await rpc_error(
        client.tenants.ListUsers(tenant_pb2.ListUsersRequest(tenant_id="team"), metadata=client.admin)
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            left = await conn.scalar(
                sa.select(sa.func.count()).select_from(users).where(users.c.tenant_id == "team")
            )
    finally:
        await engine.dispose()
    assert left == 0


async def test_same_email_in_two_tenants_is_two_users(client: TenantClient) -> None:
    await client.create("tenant-one")
    await client.create("tenant-two")
    a = await client.tenants.InviteUser(_invite("tenant-one", "shared@x.test"), metadata=client.admin)
    b = await client.tenants.InviteUser(_invite("tenant-two", "shared@x.test"), metadata=client.admin)
    assert a.user_id != b.user_id
    # a user id of another tenant is not found here, and stays where it is
    err = await rpc_error(
        client.tenants.RemoveUser(
            tenant_pb2.RemoveUserRequest(tenant_id="tenant-one", user_id=b.user_id),
            metadata=client.tenant_admin("tenant-one"),
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND
    two = await client.tenants.ListUsers(
        tenant_pb2.ListUsersRequest(tenant_id="tenant-two"), metadata=client.admin
    )
    assert [u.user_id for u in two.users] == [b.user_id]


async def test_who_may_manage_users(client: TenantClient) -> None:
    await client.create("tenant-a")
    await client.create("tenant-b")
    # members are refused
    err = await rpc_error(
        client.tenants.InviteUser(_invite("tenant-a", "m@a.test"), metadata=client.member("tenant-a"))
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    # tenant-admin of A cannot invite into, list or remove from B
    as_a = client.tenant_admin("tenant-a")
    err = await rpc_error(client.tenants.InviteUser(_invite("tenant-b", "x@b.test"), metadata=as_a))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    victim = await client.tenants.InviteUser(
        _invite("tenant-b", "v@b.test"), metadata=client.tenant_admin("tenant-b")
    )
    err = await rpc_error(
        client.tenants.RemoveUser(
            tenant_pb2.RemoveUserRequest(tenant_id="tenant-b", user_id=victim.user_id), metadata=as_a
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = await rpc_error(
        client.tenants.ListUsers(tenant_pb2.ListUsersRequest(tenant_id="tenant-b"), metadata=as_a)
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    b_users = await client.tenants.ListUsers(
        tenant_pb2.ListUsersRequest(tenant_id="tenant-b"), metadata=client.admin
    )
    assert [u.email for u in b_users.users] == ["v@b.test"]


async def test_users_of_unknown_tenants_and_bad_input(client: TenantClient) -> None:
    for call in (
        client.tenants.InviteUser(_invite("nowhere", "a@b.test"), metadata=client.admin),
        client.tenants.ListUsers(tenant_pb2.ListUsersRequest(tenant_id="nowhere"), metadata=client.admin),
        client.tenants.RemoveUser(
            tenant_pb2.RemoveUserRequest(tenant_id="nowhere", user_id="u-1"), metadata=client.admin
        ),
    ):
        assert (await rpc_error(call)).code() == grpc.StatusCode.NOT_FOUND
    await client.create("strict")
    for bad in (_invite("strict", "not-an-email"), _invite("strict", "ok@x.test", role=0)):
        err = await rpc_error(client.tenants.InviteUser(bad, metadata=client.admin))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_suspended_tenant_keeps_users_readable_and_removable(client: TenantClient) -> None:
    await client.create("frozen")
    user = await client.tenants.InviteUser(_invite("frozen", "f@x.test"), metadata=client.admin)
    await client.tenants.SuspendTenant(
        tenant_pb2.SuspendTenantRequest(tenant_id="frozen"), metadata=client.admin
    )
    err = await rpc_error(client.tenants.InviteUser(_invite("frozen", "g@x.test"), metadata=client.admin))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and error_info(err).reason == "TENANT_SUSPENDED"
    listed = await client.tenants.ListUsers(
        tenant_pb2.ListUsersRequest(tenant_id="frozen"), metadata=client.admin
    )
    assert [u.user_id for u in listed.users] == [user.user_id]
    await client.tenants.RemoveUser(
        tenant_pb2.RemoveUserRequest(tenant_id="frozen", user_id=user.user_id), metadata=client.admin
    )
