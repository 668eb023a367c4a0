"""A user token's `sub` against the tenant's current users.

With MAKOTO_TOKEN_USER_CHECK on (the production profile's default; a mesh of this module's own),
a tenant-admin or member token whose subject the tenant does not have is refused by every
service -- 403 / PERMISSION_DENIED, reason USER_NOT_IN_TENANT -- through Envoy and on each
service's own port, while operators' and API keys' tokens are not narrowed. In both meshes (the
check on, and the default development mesh where it is off) a removed user is refused by every
service, storage, LLM and metering included, within a second of RemoveUser."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
import redis.asyncio as aioredis

from services.common.dev_issuer import mint_token
from services.common.identity import Role
from tests.e2e.every_service import SERVICES, reasons, rest_path, statuses
from tests.mesh_fixture import RunningMesh, start_mesh, stop_mesh
from tests.security.attacks import create_tenant

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

OK = grpc.StatusCode.OK
ALL_OK = {s: (200, OK) for s in SERVICES}
NOT_A_USER = {s: (403, grpc.StatusCode.PERMISSION_DENIED) for s in SERVICES}
REMOVED = {s: (401, grpc.StatusCode.UNAUTHENTICATED) for s in SERVICES}
PREFIX = f"makoto-usercheck-{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    mesh = start_mesh(
        tmp_path_factory.mktemp("user-check"),
        extra_env={
            "MAKOTO_TOKEN_USER_CHECK": "true",
            # Short, so the test can show the check standing without the revocation store's mark.
            "MAKOTO_TOKEN_USER_CACHE_SECONDS": "1",
            "MAKOTO_REDIS_PREFIX": PREFIX,
        },
    )
    yield mesh
    stop_mesh(mesh)


async def _invite(
    http: httpx.AsyncClient, mesh: RunningMesh, tenant: str, role: str = "USER_ROLE_MEMBER"
) -> str:
    r = await http.post(
        f"/api/v1/tenants/{tenant}/users",
        json={"email": f"{uuid.uuid4().hex[:8]}@users.test", "role": role},
        headers=mesh.headers(Role.PLATFORM_ADMIN),
    )
    assert r.status_code == 200, r.text
    return str(r.json()["userId"])


def _as(mesh: RunningMesh, tenant: str, subject: str, role: Role = Role.MEMBER) -> str:
    return mint_token(mesh.settings, role=role, tenant_id=tenant, subject=subject)


async def test_unknown_subject_is_refused_where_the_check_applies(checked: RunningMesh) -> None:
    mesh = checked
    tenant, other = create_tenant(mesh, "users"), create_tenant(mesh, "users-other")
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as http:
        user = await _invite(http, mesh, tenant)
        stranger = await _invite(http, mesh, other)
        assert await statuses(mesh, http, tenant, _as(mesh, tenant, user)) == ALL_OK
        # A signed token for a subject the tenant never had, and for another tenant's user.
        for subject in ("u-nobody", stranger):
            token = _as(mesh, tenant, subject)
            assert await statuses(mesh, http, tenant, token) == NOT_A_USER, subject
            for service in SERVICES:
                r = await http.get(rest_path(service, tenant), headers={"authorization": f"Bearer {token}"})
                assert reasons(r) == "USER_NOT_IN_TENANT", (service, r.text)
        # A tenant-admin token of nobody cannot invite anyone: refused, nothing changed.
        ghost_admin = {"authorization": f"Bearer {_as(mesh, tenant, 'u-ghost', Role.TENANT_ADMIN)}"}
        r = await http.post(
            f"/api/v1/tenants/{tenant}/users",
            json={"email": "planted@users.test", "role": "USER_ROLE_TENANT_ADMIN"},
            headers=ghost_admin,
        )
        assert r.status_code == 403 and reasons(r) == "USER_NOT_IN_TENANT", r.text
        listed = await http.get(f"/api/v1/tenants/{tenant}/users", headers=mesh.headers(Role.PLATFORM_ADMIN))
        assert "planted@users.test" not in listed.text
        # Not narrowed: the operator (no tenant users) and API keys (their key is checked).
        operator = mint_token(mesh.settings, role=Role.PLATFORM_ADMIN, subject="ops-anyone")
        r = await http.get(f"/api/v1/tenants/{tenant}", headers={"authorization": f"Bearer {operator}"})
        assert r.status_code == 200, r.text
        admin_id = await _invite(http, mesh, tenant, "USER_ROLE_TENANT_ADMIN")
        admin = {"authorization": f"Bearer {_as(mesh, tenant, admin_id, Role.TENANT_ADMIN)}"}
        expiry = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
        r = await http.post(
            f"/api/v1/auth/tenants/{tenant}/api-keys",
            json={"role": "USER_ROLE_MEMBER", "expireTime": expiry},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        issued = (await http.post("/api/v1/auth/token", json={"apiKey": r.json()["secret"]})).json()
        assert await statuses(mesh, http, tenant, issued["accessToken"]) == ALL_OK


async def _removed_everywhere_within_a_second(mesh: RunningMesh) -> tuple[str, str]:
    """Invite, see the user's token served everywhere, remove, and poll until every service
    refuses it; returns (tenant, user id)."""
    tenant = create_tenant(mesh, "removed")
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as http:
        user = await _invite(http, mesh, tenant)
        kept = await _invite(http, mesh, tenant)
        token = _as(mesh, tenant, user)
        assert await statuses(mesh, http, tenant, token) == ALL_OK
        r = await http.delete(
            f"/api/v1/tenants/{tenant}/users/{user}", headers=mesh.headers(Role.PLATFORM_ADMIN)
        )
        assert r.status_code == 200, r.text
        removed_at = time.monotonic()
        while True:
            seen = await statuses(mesh, http, tenant, token)
            if seen == REMOVED:
                break
            assert time.monotonic() - removed_at < 1.0, f"removed user still served after a second: {seen}"
            await asyncio.sleep(0.05)
        assert await statuses(mesh, http, tenant, _as(mesh, tenant, kept)) == ALL_OK
    return tenant, user


async def test_removed_user_is_refused_everywhere_with_the_check(checked: RunningMesh) -> None:
    tenant, user = await _removed_everywhere_within_a_second(checked)
    # The revocation store's mark is the fast path; the user store is the truth. With the mark
    # gone (a Redis restart, an expired key) a fresh token of the removed user is still refused,
    # now for not being a user, once the "is a user" answer aged out (1 s in this mesh).
    r = aioredis.Redis.from_url(checked.settings.redis_url)
    try:
        assert await r.delete(f"{PREFIX}authn:user:{tenant}:{user}") == 1
    finally:
        await r.aclose()
    await asyncio.sleep(1.2)
    async with httpx.AsyncClient(base_url=checked.base_url, timeout=30) as http:
        assert await statuses(checked, http, tenant, _as(checked, tenant, user)) == NOT_A_USER


async def test_removed_user_is_refused_everywhere_in_development(mesh: RunningMesh) -> None:
    # The default mesh does not check subjects (makoto token mints any), but removal still bites.
    await _removed_everywhere_within_a_second(mesh)
