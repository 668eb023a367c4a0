"""Tenant users in a Cognito user pool (moto's cognito-idp): InviteUser creates the pool user with
custom:tenant_id / custom:role in the tenant's group; a token the user obtains from the pool
(AdminInitiateAuth) is accepted by TenantService, which verifies it against the pool's JWKS
served by moto; RemoveUser disables the user (sign-in refused) and ends the tokens already issued
(refused within a second); with the subject check on, a token naming no user of the tenant's group
is refused; offboarding deletes them.
Pool state is checked with boto3."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import grpc
import pytest
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.config import JwtProvider, MeshSettings
from services.common.dev_issuer import mint_token
from services.common.identity import Role
from services.tenant.server import build
from tests.contract.emulators import MOTO_CREDENTIALS, Emulator, moto_server  # noqa: F401
from tests.support import bearer, direct_channel, make_settings, running_server

PASSWORD = "Corr3ct-Horse-Battery!"


@dataclass
class Pool:
    endpoint: str
    pool_id: str
    client_id: str

    def idp(self) -> Any:
        return boto3.client(
            "cognito-idp",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=MOTO_CREDENTIALS["access_key_id"],
            aws_secret_access_key=MOTO_CREDENTIALS["secret_access_key"],
        )

    def sign_in(self, username: str) -> str:
        answer = self.idp().admin_initiate_auth(
            UserPoolId=self.pool_id,
            ClientId=self.client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD},
        )
        return str(answer["AuthenticationResult"]["IdToken"])


@pytest.fixture(scope="module")
def pool(moto_server: Emulator) -> Pool:  # noqa: F811
    probe = Pool(moto_server.endpoint, "", "")
    idp = probe.idp()
    made = idp.create_user_pool(
        PoolName=f"makoto-users-{uuid.uuid4().hex[:6]}",
        Schema=[
            {"Name": "tenant_id", "AttributeDataType": "String", "Mutable": True},
            {"Name": "role", "AttributeDataType": "String", "Mutable": True},
        ],
    )["UserPool"]
    client = idp.create_user_pool_client(
        UserPoolId=made["Id"], ClientName="makoto-web", ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]
    return Pool(moto_server.endpoint, made["Id"], client["ClientId"])


@dataclass
class Api:
    settings: MeshSettings
    stub: tenant_pb2_grpc.TenantServiceStub


@pytest.fixture
async def api(pool: Pool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    for name, value in {
        "MAKOTO_AWS_ENDPOINT_URL": pool.endpoint,
        "MAKOTO_AWS_REGION": "us-east-1",
        "MAKOTO_AWS_ACCESS_KEY_ID": MOTO_CREDENTIALS["access_key_id"],
        "MAKOTO_AWS_SECRET_ACCESS_KEY": MOTO_CREDENTIALS["secret_access_key"],
        "MAKOTO_AWS_COGNITO_USER_POOL_ID": pool.pool_id,
    }.items():
        monkeypatch.setenv(name, value)
    cognito = JwtProvider(
        name="cognito",
        issuer=f"https://cognito-idp.us-east-1.amazonaws.com/{pool.pool_id}",
        jwks_url=f"{pool.endpoint}/{pool.pool_id}/.well-known/jwks.json",
        client_ids=[pool.client_id],
    )
    # The subject check on (as the production profile has it): pool tokens must name pool users.
    settings = make_settings(tmp_path / "home", extra_jwt_providers=[cognito], token_user_check=True)
    url = f"sqlite+aiosqlite:///{settings.data_dir / 'tenant.sqlite3'}"
    async with running_server(functools.partial(build, db_url=url, recorder_factory=None), settings):
        async with direct_channel(settings.address("tenant")) as channel:
            yield Api(settings, tenant_pb2_grpc.TenantServiceStub(channel))


def bearer_for(settings: MeshSettings, tenant: str, subject: str) -> tuple[tuple[str, str], ...]:
    token = mint_token(settings, role=Role.MEMBER, tenant_id=tenant, subject=subject)
    return (("authorization", f"Bearer {token}"),)


def attributes(pool: Pool, username: str) -> dict[str, str]:
    user = pool.idp().admin_get_user(UserPoolId=pool.pool_id, Username=username)
    return {a["Name"]: a["Value"] for a in user["UserAttributes"]} | {"enabled": str(user["Enabled"])}


async def test_cognito_user_invited_signs_in_is_accepted_then_removed(api: Api, pool: Pool) -> None:
    admin = bearer(api.settings, "platform-admin")
    tid = f"cg-{uuid.uuid4().hex[:10]}"
    await api.stub.CreateTenant(
        tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id=tid)), metadata=admin
    )
    alice = await api.stub.InviteUser(
        tenant_pb2.InviteUserRequest(
            tenant_id=tid,
            user=tenant_pb2.TenantUser(email="Alice@Example.test", role=tenant_pb2.USER_ROLE_TENANT_ADMIN),
        ),
        metadata=admin,
    )
    username = f"{tid}:alice@example.test"
    attrs = attributes(pool, username)
    assert (attrs["custom:tenant_id"], attrs["custom:role"], attrs["email"]) == (
        tid,
        "tenant-admin",
        "alice@example.test",
    )
    assert alice.user_id == attrs["sub"]
    groups = pool.idp().admin_list_groups_for_user(UserPoolId=pool.pool_id, Username=username)["Groups"]
    assert [g["GroupName"] for g in groups] == [f"tenant-{tid}"]

    # Alice sets her password and signs in at the pool; her ID token works at TenantService.
    pool.idp().admin_set_user_password(
        UserPoolId=pool.pool_id, Username=username, Password=PASSWORD, Permanent=True
    )
    token = pool.sign_in(username)
    as_alice = (("authorization", f"Bearer {token}"),)
    got = await api.stub.GetTenant(tenant_pb2.GetTenantRequest(tenant_id=tid), metadata=as_alice)
    assert got.tenant_id == tid
    listed = await api.stub.ListUsers(tenant_pb2.ListUsersRequest(tenant_id=tid), metadata=as_alice)
    assert [(u.user_id, u.email, u.role) for u in listed.users] == [
        (alice.user_id, "alice@example.test", tenant_pb2.USER_ROLE_TENANT_ADMIN)
    ]
    # ... and only for her own tenant.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.GetTenant(tenant_pb2.GetTenantRequest(tenant_id="someone-else"), metadata=as_alice)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # Alice invites Bob (a tenant-admin may), then the platform removes Alice: she cannot sign in.
    await api.stub.InviteUser(
        tenant_pb2.InviteUserRequest(
            tenant_id=tid,
            user=tenant_pb2.TenantUser(email="bob@example.test", role=tenant_pb2.USER_ROLE_MEMBER),
        ),
        metadata=as_alice,
    )
    # A signed token whose subject is no user of the tenant's pool group is refused.
    nobody = bearer_for(api.settings, tid, "00000000-0000-0000-0000-000000000000")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.GetTenant(tenant_pb2.GetTenantRequest(tenant_id=tid), metadata=nobody)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not a user" in (err.value.details() or "")

    await api.stub.RemoveUser(
        tenant_pb2.RemoveUserRequest(tenant_id=tid, user_id=alice.user_id), metadata=admin
    )
    removed_at = time.monotonic()
    assert attributes(pool, username)["enabled"] == "False"
    with pytest.raises(pool.idp().exceptions.NotAuthorizedException):
        pool.sign_in(username)
    listed = await api.stub.ListUsers(tenant_pb2.ListUsersRequest(tenant_id=tid), metadata=admin)
    assert [u.email for u in listed.users] == ["bob@example.test"]
    # The ID token Alice already holds does not live out its lifetime: RemoveUser wrote the
    # removed-user mark for her Cognito `sub`, so it is refused within a second.
    while True:
        try:
            await api.stub.GetTenant(tenant_pb2.GetTenantRequest(tenant_id=tid), metadata=as_alice)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "no longer belongs" in (exc.details() or "")
            break
        assert time.monotonic() - removed_at < 1.0, "removed Cognito user still served after a second"
        await asyncio.sleep(0.05)

    # Offboarding deletes the tenant's users from the pool.
    await api.stub.DeleteTenant(tenant_pb2.DeleteTenantRequest(tenant_id=tid), metadata=admin)
    for gone in (username, f"{tid}:bob@example.test"):
        with pytest.raises(pool.idp().exceptions.UserNotFoundException):
            pool.idp().admin_get_user(UserPoolId=pool.pool_id, Username=gone)
