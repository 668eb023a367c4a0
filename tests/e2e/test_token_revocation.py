"""RevokeToken (POST /api/v1/auth/tenants/{t}/tokens:revoke, `makoto tokens revoke`): a token
revoked by its jti is refused by every service within a second, through Envoy and on each
service's own port; the revocation is scoped to the tenant (a tenant-admin cannot reach another
tenant's tokens, not even by naming their jti under its own tenant); bad input is 400 /
INVALID_ARGUMENT; the call is in the tenant's audit log."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import jwt
import pytest
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc
from typer.testing import CliRunner

from services.cli import app
from services.common.dev_issuer import mint_token
from services.common.identity import Role
from tests.e2e.every_service import SERVICES, statuses
from tests.mesh_fixture import RunningMesh
from tests.security.attacks import create_tenant

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

OK = grpc.StatusCode.OK
ALL_OK = {s: (200, OK) for s in SERVICES}
ALL_REVOKED = {s: (401, grpc.StatusCode.UNAUTHENTICATED) for s in SERVICES}


def _revoke_path(tenant: str) -> str:
    return f"/api/v1/auth/tenants/{tenant}/tokens:revoke"


def _jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


async def _refused_everywhere_within_a_second(
    mesh: RunningMesh, http: httpx.AsyncClient, tenant: str, token: str, since: float
) -> float:
    """Poll until every service refuses the token; returns the seconds that took."""
    while True:
        seen = await statuses(mesh, http, tenant, token)
        if seen == ALL_REVOKED:
            return time.monotonic() - since
        assert time.monotonic() - since < 1.0, f"revoked token still served after a second: {seen}"
        await asyncio.sleep(0.05)


async def test_a_revoked_token_is_refused_everywhere(mesh: RunningMesh) -> None:
    tenant = create_tenant(mesh, "revoke")
    admin = mesh.headers(Role.TENANT_ADMIN, tenant)
    victim = mint_token(mesh.settings, role=Role.MEMBER, tenant_id=tenant)
    bystander = mint_token(mesh.settings, role=Role.MEMBER, tenant_id=tenant)
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as http:
        assert await statuses(mesh, http, tenant, victim) == ALL_OK
        r = await http.post(_revoke_path(tenant), json={"tokenId": _jti(victim)}, headers=admin)
        revoked_at = time.monotonic()
        assert r.status_code == 200, r.text
        answer = r.json()
        assert (answer["tenantId"], answer["tokenId"]) == (tenant, _jti(victim))
        until = datetime.fromisoformat(answer["revokedUntil"].replace("Z", "+00:00"))
        # Kept at least as long as any token may live.
        assert (until - datetime.now(UTC)).total_seconds() >= mesh.settings.max_token_ttl_seconds - 5
        took = await _refused_everywhere_within_a_second(mesh, http, tenant, victim, revoked_at)
        r = await http.get(f"/api/v1/tenants/{tenant}", headers={"authorization": f"Bearer {victim}"})
        assert r.status_code == 401
        # Another token of the same user and tenant is untouched.
        assert await statuses(mesh, http, tenant, bystander) == ALL_OK
    print(f"revocation seen by every service after {took * 1000:.0f} ms")

    # The revocation is in the tenant's audit log, naming the token id (never a token).
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as http:
        deadline = time.monotonic() + 15
        while True:
            r = await http.get(f"/api/v1/tenants/{tenant}/audit", headers=admin, params={"pageSize": 1000})
            records: list[dict[str, Any]] = r.json().get("records", [])
            found = [x for x in records if x["method"] == "makoto.tenant.v1.TenantService.RevokeToken"]
            if found or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert found and found[0]["outcome"] == "OK" and found[0]["role"] == "tenant-admin", records
    assert found[0]["resource"] == f"token_id={_jti(victim)}"
    assert victim not in json.dumps(records)


async def test_a_tenant_admin_cannot_revoke_another_tenants_token(mesh: RunningMesh) -> None:
    tenant, other = create_tenant(mesh, "revoke-own"), create_tenant(mesh, "revoke-other")
    victim = mint_token(mesh.settings, role=Role.MEMBER, tenant_id=tenant)
    foreign_admin = mesh.headers(Role.TENANT_ADMIN, other)
    body = {"tokenId": _jti(victim)}
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as http:
        # Naming the victim's tenant: refused at Envoy and on TenantService's own port.
        r = await http.post(_revoke_path(tenant), json=body, headers=foreign_admin)
        assert r.status_code == 403, r.text
        async with mesh.channel(mesh.address("tenant")) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await tenant_pb2_grpc.TenantServiceStub(ch).RevokeToken(
                    tenant_pb2.RevokeTokenRequest(tenant_id=tenant, token_id=_jti(victim)),
                    metadata=tuple(foreign_admin.items()),
                )
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # Naming the jti under its own tenant: accepted, but it only refuses `other`'s tokens.
        r = await http.post(_revoke_path(other), json=body, headers=foreign_admin)
        assert r.status_code == 200, r.text
        await asyncio.sleep(mesh.settings.token_state_cache_seconds + 0.3)
        assert await statuses(mesh, http, tenant, victim) == ALL_OK  # nothing changed for it
        # A platform-admin may revoke any tenant's token.
        r = await http.post(_revoke_path(tenant), json=body, headers=mesh.headers(Role.PLATFORM_ADMIN))
        assert r.status_code == 200, r.text
        await _refused_everywhere_within_a_second(mesh, http, tenant, victim, time.monotonic())


@pytest.mark.parametrize(
    "body",
    [{}, {"tokenId": ""}, {"tokenId": "has spaces"}, {"tokenId": "x" * 129}, {"tokenId": "a/b"}],
)
async def test_bad_input_is_invalid_argument(mesh: RunningMesh, body: dict[str, str]) -> None:
    tenant = create_tenant(mesh, "revoke-bad")
    admin = mesh.headers(Role.TENANT_ADMIN, tenant)
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as http:
        r = await http.post(_revoke_path(tenant), json=body, headers=admin)
        assert r.status_code == 400, r.text
        assert "tokenId" in r.text or "token_id" in r.text
    async with mesh.channel(mesh.address("tenant")) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await tenant_pb2_grpc.TenantServiceStub(ch).RevokeToken(
                tenant_pb2.RevokeTokenRequest(tenant_id=tenant, token_id=body.get("tokenId", "")),
                metadata=tuple(admin.items()),
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_tenant_is_not_found(mesh: RunningMesh) -> None:
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as http:
        r = await http.post(
            _revoke_path("no-such-tenant-x"),
            json={"tokenId": "abc"},
            headers=mesh.headers(Role.PLATFORM_ADMIN),
        )
        assert r.status_code == 404, r.text


async def test_cli_tokens_revoke(mesh: RunningMesh) -> None:
    tenant = create_tenant(mesh, "revoke-cli")
    victim = mint_token(mesh.settings, role=Role.MEMBER, tenant_id=tenant)
    admin = mesh.headers(Role.TENANT_ADMIN, tenant)["authorization"].removeprefix("Bearer ")
    done = CliRunner().invoke(
        app, ["tokens", "revoke", tenant, _jti(victim), "--url", mesh.base_url, "--token", admin]
    )
    assert done.exit_code == 0, done.stdout
    assert json.loads(done.stdout)["tokenId"] == _jti(victim)
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as http:
        await _refused_everywhere_within_a_second(mesh, http, tenant, victim, time.monotonic())
    # Bad input: the API's 400 printed, exit 1.
    done = CliRunner().invoke(
        app, ["tokens", "revoke", tenant, "not a jti", "--url", mesh.base_url, "--token", admin]
    )
    assert done.exit_code == 1 and "INVALID_ARGUMENT" in done.stdout, done.stdout
