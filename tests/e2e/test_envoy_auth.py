"""Envoy's JWT gate: only a valid platform token in `Authorization: Bearer` gets through, and
identity headers a client sends never reach a service."""

from __future__ import annotations

import json
import time

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

from services.common.dev_issuer import mint_token
from services.common.identity import ROLE_CLAIM, TENANT_CLAIM, Role
from tests.e2e.envoy_spy import SpyMesh
from tests.support import forge_token

pytestmark = pytest.mark.e2e

ITEM = "/api/v1/tenants/acme/collections/notes/partitions/p1/items/s1"


def _claims(spy: SpyMesh, **over: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": spy.settings.issuer,
        "aud": spy.settings.audience,
        "sub": "attacker",
        "iat": now,
        "exp": now + 600,
        ROLE_CLAIM: "member",
        TENANT_CLAIM: "acme",
    }
    claims.update(over)
    return claims


def _kid(spy: SpyMesh) -> str:
    return str(json.loads(spy.settings.jwks_path.read_text())["keys"][0]["kid"])


def _public_pem(spy: SpyMesh) -> bytes:
    private = serialization.load_pem_private_key(spy.settings.signing_key_path.read_bytes(), password=None)
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def bad_tokens(spy: SpyMesh) -> dict[str, str]:
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    foreign_pem = foreign.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    real_key = spy.settings.signing_key_path.read_bytes()
    return {
        "expired": mint_token(spy.settings, role=Role.MEMBER, tenant_id="acme", ttl_seconds=-3600),
        "wrong-issuer": jwt.encode(
            _claims(spy, iss="https://evil.example"), real_key, "RS256", {"kid": _kid(spy)}
        ),
        "foreign-key": jwt.encode(_claims(spy), foreign_pem, "RS256", {"kid": _kid(spy)}),
        "alg-none": forge_token(_claims(spy), alg="none"),
        "hs256-public-key": forge_token(_claims(spy), alg="HS256", key=_public_pem(spy)),
        "garbage": "not.a.jwt",
        "tampered": mint_token(spy.settings, role=Role.MEMBER, tenant_id="acme")[:-6] + "AAAAAA",
    }


async def test_no_token_is_401(envoy_spy: SpyMesh) -> None:
    envoy_spy.rec.clear()
    async with httpx.AsyncClient(base_url=envoy_spy.base_url) as client:
        r = await client.get(ITEM)
        assert r.status_code == 401
        # A token in the wrong header form (no "Bearer ") is no token at all.
        token = mint_token(envoy_spy.settings, role=Role.MEMBER, tenant_id="acme")
        r = await client.get(ITEM, headers={"authorization": token})
        assert r.status_code == 401
    assert envoy_spy.rec.calls == []


async def test_token_in_query_string_is_refused(envoy_spy: SpyMesh) -> None:
    envoy_spy.rec.clear()
    token = mint_token(envoy_spy.settings, role=Role.MEMBER, tenant_id="acme")
    agent = "query-token-test"
    async with httpx.AsyncClient(base_url=envoy_spy.base_url, headers={"user-agent": agent}) as client:
        r = await client.get(ITEM, params={"access_token": token})
        assert r.status_code == 401
        # With a valid header too, the stray parameter is still not accepted silently.
        r = await client.get(
            ITEM, params={"access_token": token}, headers={"authorization": f"Bearer {token}"}
        )
        assert r.status_code == 400
    assert envoy_spy.rec.calls == []
    # The JSON access log has both requests, and no token in it (path without query, no headers).
    entries = await envoy_spy.access_log_entries(agent)
    assert [e["status"] for e in entries] == [401, 400]
    assert entries[0]["path"] == ITEM
    assert token not in envoy_spy.access_log.read_text()


@pytest.mark.parametrize(
    "kind", ["expired", "wrong-issuer", "foreign-key", "alg-none", "hs256-public-key", "garbage", "tampered"]
)
async def test_bad_tokens_are_401(envoy_spy: SpyMesh, kind: str) -> None:
    envoy_spy.rec.clear()
    token = bad_tokens(envoy_spy)[kind]
    async with httpx.AsyncClient(base_url=envoy_spy.base_url) as client:
        r = await client.get(ITEM, headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 401, (kind, r.status_code, r.text)
    async with grpc.aio.insecure_channel(envoy_spy.grpc_target) as channel:
        stub = storage_service_pb2_grpc.StorageServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetItem(
                items_pb2.GetItemRequest(
                    tenant_id="acme", collection="notes", partition_key="p1", sort_key="s1"
                ),
                metadata=(("authorization", f"Bearer {token}"),),
            )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, kind
    assert envoy_spy.rec.calls == []


async def test_wrong_audience_is_refused(envoy_spy: SpyMesh) -> None:
    # jwt_authn answers a valid signature with the wrong audience with 403 (not 401).
    envoy_spy.rec.clear()
    token = mint_token(envoy_spy.settings, role=Role.MEMBER, tenant_id="acme", audience="someone-else")
    async with httpx.AsyncClient(base_url=envoy_spy.base_url) as client:
        r = await client.get(ITEM, headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 403
    assert envoy_spy.rec.calls == []


async def test_valid_token_passes_and_is_forwarded(envoy_spy: SpyMesh) -> None:
    envoy_spy.rec.clear()
    token = mint_token(envoy_spy.settings, role=Role.MEMBER, tenant_id="acme")
    async with httpx.AsyncClient(base_url=envoy_spy.base_url) as client:
        r = await client.get(ITEM, headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["sortKey"] == "s1"
    [call] = envoy_spy.rec.calls
    # forward: true — the service verifies the very same token itself.
    assert call.metadata["authorization"] == f"Bearer {token}"


SPOOFED = {
    "x-tenant-id": "globex",
    "x-makoto-tenant-id": "globex",
    "x-makoto-role": "platform-admin",
    "X-Makoto-Principal": "root",
    "x-jwt-payload": "eyJjdXN0b206dGVuYW50X2lkIjoiZ2xvYmV4In0",
    "x-jwt-claim-tenant": "globex",
    "x-user-id": "root",
    "x-role": "platform-admin",
    "x-forwarded-user": "root",
    "x-auth-request-user": "root",
    "x-envoy-original-path": "/api/v1/tenants/globex",
    "x_tenant_id": "globex",
}


async def test_client_identity_headers_never_reach_the_service(envoy_spy: SpyMesh) -> None:
    envoy_spy.rec.clear()
    token = mint_token(envoy_spy.settings, role=Role.MEMBER, tenant_id="acme")
    async with httpx.AsyncClient(base_url=envoy_spy.base_url) as client:
        r = await client.get(ITEM, headers={"authorization": f"Bearer {token}", **SPOOFED})
    assert r.status_code == 200, r.text
    async with grpc.aio.insecure_channel(envoy_spy.grpc_target) as channel:
        stub = storage_service_pb2_grpc.StorageServiceStub(channel)
        await stub.GetItem(
            items_pb2.GetItemRequest(tenant_id="acme", collection="notes", partition_key="p1", sort_key="s1"),
            metadata=(("authorization", f"Bearer {token}"), *((k.lower(), v) for k, v in SPOOFED.items())),
        )
    assert len(envoy_spy.rec.calls) == 2
    for call in envoy_spy.rec.calls:
        seen = {k.lower(): v for k, v in call.metadata.items()}
        assert "authorization" in seen
        # Envoy sets x-envoy-original-path itself after transcoding; the client's value is gone.
        leaked = {k for k, v in SPOOFED.items() if seen.get(k.lower()) == v}
        leaked |= (set(seen) & {k.lower() for k in SPOOFED}) - {"x-envoy-original-path"}
        assert not leaked, f"identity headers reached the service: {leaked}"
        assert not [k for k in seen if k.startswith("x-makoto-")]
