"""Token lifecycle in the services: maximum lifetime, audience-bound service tokens, revocation
by jti, removed users (Redis: the machine's shared one, under a private key prefix)."""

from __future__ import annotations

import asyncio
import time

import grpc
import jwt
import pytest
from makoto.tenant.v1 import directory_pb2, tenant_pb2

from services.common.config import MeshSettings
from services.common.dev_issuer import mint_token
from services.common.errors import Unauthenticated, Unavailable
from services.common.identity import Role, service_audience
from services.common.jwt_verify import JwtVerifier
from services.common.token_state import TokenRevoked, TokenState
from tests.support import free_port
from tests.unit.tenant.conftest import TenantClient, rpc_error


def _verifier(settings: MeshSettings, service: str | None = "storage") -> JwtVerifier:
    return JwtVerifier(
        settings.jwt_providers(),
        service=service,
        max_ttl_seconds=settings.max_token_ttl_seconds,
        max_service_ttl_seconds=settings.max_service_token_ttl_seconds,
    )


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def test_lifetime_longer_than_the_maximum_is_refused(settings: MeshSettings) -> None:
    v = _verifier(settings)
    longest = settings.max_token_ttl_seconds
    ok = mint_token(settings, role=Role.MEMBER, tenant_id="acme", ttl_seconds=longest)
    assert v.verify(ok).tenant_id == "acme"
    for role, tenant in ((Role.MEMBER, "acme"), (Role.TENANT_ADMIN, "acme"), (Role.PLATFORM_ADMIN, None)):
        too_long = mint_token(settings, role=role, tenant_id=tenant, ttl_seconds=longest + 60)
        with pytest.raises(Unauthenticated, match="lifetime exceeds"):
            v.verify(too_long)
    # Service tokens have the shorter maximum.
    aud = service_audience(settings.audience, "storage")
    service_max = settings.max_service_token_ttl_seconds
    short = mint_token(settings, role=Role.SERVICE, audience=aud, ttl_seconds=service_max)
    assert v.verify(short).role is Role.SERVICE
    too_long = mint_token(settings, role=Role.SERVICE, audience=aud, ttl_seconds=service_max + 1)
    with pytest.raises(Unauthenticated, match="lifetime exceeds"):
        v.verify(too_long)


def test_token_without_iat_is_refused(settings: MeshSettings) -> None:
    minted = mint_token(settings, role=Role.MEMBER, tenant_id="acme")
    claims = jwt.decode(minted, options={"verify_signature": False})
    del claims["iat"]
    kid = jwt.get_unverified_header(minted)["kid"]
    token = jwt.encode(claims, settings.signing_key_path.read_bytes(), "RS256", {"kid": kid})
    with pytest.raises(Unauthenticated):
        _verifier(settings).verify(token)


def test_service_tokens_are_bound_to_their_audience(settings: MeshSettings) -> None:
    for_metering = mint_token(
        settings, role=Role.SERVICE, audience=service_audience(settings.audience, "metering")
    )
    assert _verifier(settings, "metering").verify(for_metering).role is Role.SERVICE
    for other in ("storage", "tenant", "llm", None):
        with pytest.raises(Unauthenticated, match="not addressed"):
            _verifier(settings, other).verify(for_metering)
    # The plain platform audience (what user tokens carry) is not enough for a service token.
    plain = mint_token(settings, role=Role.SERVICE, audience=settings.audience)
    with pytest.raises(Unauthenticated, match="not addressed"):
        _verifier(settings, "metering").verify(plain)
    # A user token addressed only to a service audience is refused (wrong audience).
    user = mint_token(
        settings, role=Role.MEMBER, tenant_id="acme", audience=service_audience(settings.audience, "storage")
    )
    with pytest.raises(Unauthenticated, match="audience"):
        _verifier(settings).verify(user)
    with pytest.raises(ValueError, match="audience"):
        mint_token(settings, role=Role.SERVICE)


def _state(settings: MeshSettings, url: str | None = None, fail_closed: bool = False) -> TokenState:
    return TokenState(
        url or settings.redis_url,
        prefix=settings.redis_prefix,
        max_token_ttl_seconds=settings.max_token_ttl_seconds,
        cache_seconds=0.2,
        fail_closed=fail_closed,
    )


async def test_revocation_by_jti_bites_within_the_cache_window(settings: MeshSettings) -> None:
    v = _verifier(settings)
    reader, writer = _state(settings), _state(settings)
    try:
        mine = v.verify(mint_token(settings, role=Role.MEMBER, tenant_id="acme"))
        other = v.verify(mint_token(settings, role=Role.MEMBER, tenant_id="acme"))
        await reader.check(mine)
        await reader.check(other)
        # A mark under another tenant names the same jti but does not touch this token.
        await writer.revoke_token("globex", mine.token_id, mine.expires_at)
        await asyncio.sleep(0.6)  # past the reader's cache window
        await reader.check(mine)
        await writer.revoke_token("acme", mine.token_id, mine.expires_at)
        revoked_at = time.monotonic()
        while True:
            try:
                await reader.check(mine)
            except TokenRevoked as exc:
                assert exc.code == grpc.StatusCode.UNAUTHENTICATED
                break
            assert time.monotonic() - revoked_at < 1.0, "revocation not seen within a second"
            await asyncio.sleep(0.02)
        await reader.check(other)  # another token of the same user is untouched
        # The mark expires with the token: nothing stays in Redis for tokens that are gone.
        assert reader._redis is not None
        ttl = await reader._redis.ttl(f"{settings.redis_prefix}authn:jti:acme:{mine.token_id}")
        assert 0 < ttl <= int(mine.expires_at - time.time()) + 31
    finally:
        await reader.close()
        await writer.close()


async def test_unreachable_store_fails_open_or_closed_as_configured(settings: MeshSettings) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    principal = _verifier(settings).verify(mint_token(settings, role=Role.MEMBER, tenant_id="acme"))
    lenient, strict = _state(settings, dead), _state(settings, dead, fail_closed=True)
    try:
        await lenient.check(principal)  # logged, let through
        with pytest.raises(Unavailable):
            await strict.check(principal)
        with pytest.raises(Unavailable):  # still refused while the store is marked down
            await strict.check(principal)
    finally:
        await lenient.close()
        await strict.close()


def _invite(tenant: str, email: str) -> tenant_pb2.InviteUserRequest:
    return tenant_pb2.InviteUserRequest(
        tenant_id=tenant, user=tenant_pb2.TenantUser(email=email, role=tenant_pb2.USER_ROLE_MEMBER)
    )


async def test_removed_user_is_refused_within_a_second(client: TenantClient) -> None:
    settings, tenant = client.settings, "token-life"
    await client.create(tenant)
    user = await client.tenants.InviteUser(_invite(tenant, "gone@x.test"), metadata=client.admin)
    kept = await client.tenants.InviteUser(_invite(tenant, "kept@x.test"), metadata=client.admin)

    def as_user(user_id: str) -> tuple[tuple[str, str], ...]:
        return _bearer(mint_token(settings, role=Role.MEMBER, tenant_id=tenant, subject=user_id))

    gone, stays = as_user(user.user_id), as_user(kept.user_id)
    request = tenant_pb2.GetTenantRequest(tenant_id=tenant)
    await client.tenants.GetTenant(request, metadata=gone)
    await client.tenants.RemoveUser(
        tenant_pb2.RemoveUserRequest(tenant_id=tenant, user_id=user.user_id),
        metadata=client.tenant_admin(tenant),
    )
    removed_at = time.monotonic()
    while True:
        try:
            await client.tenants.GetTenant(request, metadata=gone)
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "no longer belongs" in (err.details() or "")
            break
        assert time.monotonic() - removed_at < 1.0, "removed user still served after a second"
        await asyncio.sleep(0.05)
    # A fresh token for the removed user is refused too; the other user keeps access.
    err = await rpc_error(client.tenants.GetTenant(request, metadata=as_user(user.user_id)))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await client.tenants.GetTenant(request, metadata=stays)).tenant_id == tenant


async def test_service_token_for_another_service_is_refused_by_the_server(client: TenantClient) -> None:
    settings = client.settings
    await client.create("svc-aud")
    request = directory_pb2.ResolveTenantRequest(tenant_id="svc-aud")
    for_metering = mint_token(
        settings, role=Role.SERVICE, audience=service_audience(settings.audience, "metering")
    )
    err = await rpc_error(client.directory.ResolveTenant(request, metadata=_bearer(for_metering)))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    for_tenant = mint_token(
        settings, role=Role.SERVICE, audience=service_audience(settings.audience, "tenant")
    )
    answer = await client.directory.ResolveTenant(request, metadata=_bearer(for_tenant))
    assert answer.tenant_id == "svc-aud"
