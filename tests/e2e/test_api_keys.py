"""API keys for machine clients, through Envoy (REST and gRPC) against the real mesh: created by
a tenant-admin, shown once, stored hashed, exchanged without a token for a short-lived JWT that
works like any other, scoped by role and methods, and dead within a second of being revoked."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import jwt
import pytest
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.identity import API_KEY_CLAIM, ROLE_CLAIM, TENANT_CLAIM, Role
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import create_tenant
from tests.support import direct_channel

pytestmark = pytest.mark.e2e

API = "/api/v1"


def _expiry(days: float = 1) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat().replace("+00:00", "Z")


async def _create_key(
    c: httpx.AsyncClient, tenant: str, headers: dict[str, str], **fields: object
) -> httpx.Response:
    body = {"displayName": "ci", "role": "USER_ROLE_MEMBER", "expireTime": _expiry(), **fields}
    return await c.post(f"{API}/auth/tenants/{tenant}/api-keys", json=body, headers=headers)


async def _exchange(c: httpx.AsyncClient, key: str) -> httpx.Response:
    return await c.post(f"{API}/auth/token", json={"apiKey": key})


async def test_key_lifecycle_over_rest(mesh: RunningMesh) -> None:
    tenant = create_tenant(mesh, "keys")
    admin = mesh.headers(Role.TENANT_ADMIN, tenant)
    item = f"{API}/tenants/{tenant}/collections/notes/partitions/p/items/k1"
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        r = await _create_key(c, tenant, admin, displayName="nightly export")
        assert r.status_code == 200, r.text
        created = r.json()
        key_id, secret = created["apiKey"]["keyId"], created["secret"]
        assert secret.startswith(f"mk_{key_id}_") and len(secret) > 50
        assert created["apiKey"]["role"] == "USER_ROLE_MEMBER"
        # Listed by its id, never with its secret.
        r = await c.get(f"{API}/auth/tenants/{tenant}/api-keys", headers=admin)
        assert r.status_code == 200
        assert [k["keyId"] for k in r.json()["apiKeys"]] == [key_id]
        assert secret.split("_", 2)[2] not in r.text and "secret" not in r.text.lower()

        # The exchange needs no token at Envoy; the answer is a short-lived platform token.
        r = await _exchange(c, secret)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["tokenType"] == "Bearer" and 0 < int(answer["expiresIn"]) <= 900
        claims = jwt.decode(answer["accessToken"], options={"verify_signature": False})
        assert claims[TENANT_CLAIM] == tenant and claims[ROLE_CLAIM] == "member"
        assert claims[API_KEY_CLAIM] == key_id and claims["sub"] == f"apikey:{key_id}"
        assert claims["exp"] - claims["iat"] <= 900
        as_key = {"authorization": f"Bearer {answer['accessToken']}"}

        # ... and works like any other token, within its tenant and role only.
        r = await c.put(item, json={"attributes": {"n": {"intValue": "1"}}}, headers=as_key)
        assert r.status_code == 200, r.text
        r = await c.get(f"{API}/tenants/{create_tenant(mesh, 'other')}", headers=as_key)
        assert r.status_code == 403
        r = await _create_key(c, tenant, as_key)  # a member may not create keys
        assert r.status_code == 403

        # Wrong, malformed and foreign-looking keys: 401, the same answer for each.
        for bad in (secret[:-2] + "xx", "mk_nothing", "", secret.replace(key_id, "0" * 16)):
            r = await _exchange(c, bad)
            assert r.status_code in (400, 401), (bad, r.text)
            assert "accessToken" not in r.text

        # Revoked: the exchange stops and the token already out dies within a second.
        r = await c.delete(f"{API}/auth/tenants/{tenant}/api-keys/{key_id}", headers=admin)
        assert r.status_code == 200 and r.json()["revokeTime"]
        revoked_at = time.monotonic()
        while (await c.get(item, headers=as_key)).status_code == 200:
            assert time.monotonic() - revoked_at < 1.0, "revoked key's token still works after 1 s"
            await asyncio.sleep(0.05)
        r = await c.get(item, headers=as_key)
        assert r.status_code == 401
        r = await _exchange(c, secret)
        assert r.status_code == 401
        # The item written with the key is still there for the tenant's users.
        r = await c.get(item, headers=mesh.headers(Role.MEMBER, tenant))
        assert r.status_code == 200


async def test_scoped_keys_and_who_manages_them(mesh: RunningMesh) -> None:
    tenant, other = create_tenant(mesh, "scoped"), create_tenant(mesh, "stranger")
    admin = mesh.headers(Role.TENANT_ADMIN, tenant)
    item = f"{API}/tenants/{tenant}/collections/notes/partitions/p/items/s1"
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        r = await _create_key(c, tenant, admin, methods=["makoto.storage.v1.StorageService.GetItem"])
        assert r.status_code == 200, r.text
        token = (await _exchange(c, r.json()["secret"])).json()["accessToken"]
        as_key = {"authorization": f"Bearer {token}"}
        assert (await c.get(item, headers=as_key)).status_code == 404  # allowed, nothing there
        r = await c.put(item, json={"attributes": {}}, headers=as_key)
        assert r.status_code == 403 and "METHOD_NOT_ALLOWED" in r.text

        # A tenant-admin key's token still may not manage keys (no self-renewing leaked key).
        r = await _create_key(c, tenant, admin, role="USER_ROLE_TENANT_ADMIN")
        admin_key = {
            "authorization": f"Bearer {(await _exchange(c, r.json()['secret'])).json()['accessToken']}"
        }
        r = await _create_key(c, tenant, admin_key)
        assert r.status_code == 403 and "API_KEY_CANNOT_MANAGE_KEYS" in r.text

        # Another tenant's admin can neither list nor revoke; members cannot list.
        foreign = mesh.headers(Role.TENANT_ADMIN, other)
        assert (await c.get(f"{API}/auth/tenants/{tenant}/api-keys", headers=foreign)).status_code == 403
        keys = (await c.get(f"{API}/auth/tenants/{tenant}/api-keys", headers=admin)).json()["apiKeys"]
        r = await c.delete(f"{API}/auth/tenants/{tenant}/api-keys/{keys[0]['keyId']}", headers=foreign)
        assert r.status_code == 403
        r = await c.delete(f"{API}/auth/tenants/{other}/api-keys/{keys[0]['keyId']}", headers=foreign)
        assert r.status_code == 404  # the id exists, but not in that tenant
        member = mesh.headers(Role.MEMBER, tenant)
        assert (await c.get(f"{API}/auth/tenants/{tenant}/api-keys", headers=member)).status_code == 403
        # Expiry is required and bounded.
        assert (await _create_key(c, tenant, admin, expireTime=_expiry(-1))).status_code == 400
        assert (await _create_key(c, tenant, admin, expireTime=_expiry(400))).status_code == 400


async def test_exchange_over_grpc_and_token_on_a_service_port(mesh: RunningMesh) -> None:
    tenant = create_tenant(mesh, "grpckey")
    async with grpc.aio.insecure_channel(mesh.grpc_target) as edge:
        tenants = tenant_pb2_grpc.TenantServiceStub(edge)
        expire = tenant_pb2.ApiKey(display_name="grpc", role=tenant_pb2.USER_ROLE_MEMBER)
        expire.expire_time.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
        created = await tenants.CreateApiKey(
            tenant_pb2.CreateApiKeyRequest(tenant_id=tenant, api_key=expire),
            metadata=mesh.metadata(Role.TENANT_ADMIN, tenant),
        )
        # No authorization metadata at all: Envoy lets the exchange through, nothing else.
        issued = await tenants.ExchangeApiKey(tenant_pb2.ExchangeApiKeyRequest(api_key=created.secret))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await tenants.ListApiKeys(tenant_pb2.ListApiKeysRequest(tenant_id=tenant))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await tenants.ExchangeApiKey(tenant_pb2.ExchangeApiKeyRequest(api_key=created.secret + "x"))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    md = (("authorization", f"Bearer {issued.access_token}"),)
    request = items_pb2.GetItemRequest(tenant_id=tenant, collection="notes", partition_key="p", sort_key="x")
    # Directly on StorageService's port (no Envoy): the service verifies it the same way.
    async with direct_channel(mesh.address("storage")) as direct:
        storage = storage_service_pb2_grpc.StorageServiceStub(direct)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await storage.GetItem(request, metadata=md)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        other = items_pb2.GetItemRequest(
            tenant_id="someone-else", collection="notes", partition_key="p", sort_key="x"
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await storage.GetItem(other, metadata=md)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
