"""Envoy in front of the real mesh (`makoto up` as a subprocess): the edge behaviours that need
the real services — SSE chat through the LLM service and simulator, byte-exact objects on the
local store, tenant isolation that leaves no trace, internal RPCs, gRPC and grpcurl via Envoy."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc
from makoto.tenant.v1 import directory_pb2, directory_pb2_grpc

from services.common.identity import Role
from services.mesh.envoy_config import DESCRIPTOR_PATH, rest_body_limit
from tests.e2e.conftest import RunningMesh
from tests.support import direct_channel

pytestmark = pytest.mark.e2e

API = "/api/v1"


@pytest.fixture(scope="module")
def tenants(mesh: RunningMesh) -> tuple[str, str]:
    """Two fresh tenants created through Envoy by the platform-admin."""
    ids = (f"envoy-{uuid.uuid4().hex[:8]}", f"envoy-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=mesh.base_url, headers=mesh.headers(Role.PLATFORM_ADMIN), timeout=30) as c:
        for tenant in ids:
            r = c.post(f"{API}/admin/tenants", json={"tenantId": tenant, "displayName": tenant})
            assert r.status_code == 200, r.text
            assert r.json()["state"] == "TENANT_STATE_ACTIVE"
    return ids


async def test_healthz(mesh: RunningMesh) -> None:
    async with httpx.AsyncClient(base_url=mesh.base_url) as c:
        assert (await c.get("/healthz")).status_code == 200


async def test_streamed_chat_is_sse_from_the_real_llm_service(
    mesh: RunningMesh, tenants: tuple[str, str]
) -> None:
    tenant = tenants[0]
    body = {"messages": [{"role": "user", "content": "Tell me about Envoy"}]}
    events = []
    async with httpx.AsyncClient(
        base_url=mesh.base_url, headers=mesh.headers(Role.MEMBER, tenant), timeout=30
    ) as c:
        async with c.stream("POST", f"{API}/tenants/{tenant}/chat/completions:stream", json=body) as r:
            assert r.status_code == 200, await r.aread()
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line:
                    assert line.startswith("data: "), line
                    events.append(json.loads(line[len("data: ") :]))
    assert len(events) >= 2
    text = "".join(e.get("delta", "") for e in events)
    assert text.strip()
    assert events[-1].get("usage", {}).get("completionTokens") not in (None, "0")


async def test_object_round_trip_is_byte_exact(mesh: RunningMesh, tenants: tuple[str, str]) -> None:
    tenant = tenants[0]
    data = os.urandom(2 * 1024 * 1024 + 3)
    async with httpx.AsyncClient(
        base_url=mesh.base_url, headers=mesh.headers(Role.MEMBER, tenant), timeout=30
    ) as c:
        url = f"{API}/tenants/{tenant}/objects/envoy/blob%23one.bin"
        r = await c.put(url, content=data, headers={"content-type": "application/x-makoto-test"})
        assert r.status_code == 200, r.text
        assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
        assert r.json()["key"] == "envoy/blob#one.bin"
        r = await c.get(url)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-makoto-test"
        assert r.content == data
        r = await c.put(
            f"{API}/tenants/{tenant}/objects/envoy/too-big",
            content=b"\0" * (rest_body_limit(mesh.settings) + 1),
            headers={"content-type": "application/octet-stream"},
        )
        assert r.status_code == 413
        assert (await c.get(f"{API}/tenants/{tenant}/objects/envoy/too-big")).status_code == 404


async def test_other_tenant_is_refused_and_nothing_changes(
    mesh: RunningMesh, tenants: tuple[str, str]
) -> None:
    mine, theirs = tenants
    item = "collections/notes/partitions/p1/items/s1"
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        owner = mesh.headers(Role.TENANT_ADMIN, theirs)
        r = await c.put(
            f"{API}/tenants/{theirs}/{item}",
            json={"attributes": {"v": {"stringValue": "orig"}}},
            headers=owner,
        )
        assert r.status_code == 200, r.text
        etag = r.json()["etag"]
        attacker = mesh.headers(Role.TENANT_ADMIN, mine)
        attempts = [
            c.put(
                f"{API}/tenants/{theirs}/{item}",
                json={"attributes": {"v": {"stringValue": "pwned"}}},
                headers=attacker,
            ),
            c.get(f"{API}/tenants/{theirs}/{item}", headers=attacker),
            c.get(f"{API}/tenants/{mine}/{item}", params={"tenant_id": theirs}, headers=attacker),
            c.delete(f"{API}/tenants/{mine}/{item}", params={"tenant_id": theirs}, headers=attacker),
            c.post(
                f"{API}/tenants/{mine}/items:batchWrite",
                json={
                    "tenant_id": theirs,
                    "writes": [{"delete": {"collection": "notes", "partitionKey": "p1", "sortKey": "s1"}}],
                },
                headers=attacker,
            ),
            c.put(
                f"{API}/tenants/{mine}/objects/../../{theirs}/objects/planted.txt",
                content=b"x",
                headers={**attacker, "content-type": "text/plain"},
            ),
        ]
        for attempt in attempts:
            r = await attempt
            assert r.status_code == 403, (r.request.method, r.request.url, r.status_code, r.text)
        r = await c.get(f"{API}/tenants/{theirs}/{item}", headers=owner)
        assert r.status_code == 200
        assert r.json()["etag"] == etag
        assert r.json()["attributes"]["v"] == {"stringValue": "orig"}
        assert (await c.get(f"{API}/tenants/{theirs}/objects/planted.txt", headers=owner)).status_code == 404


async def test_platform_admin_reads_billing_but_not_data(mesh: RunningMesh, tenants: tuple[str, str]) -> None:
    tenant = tenants[1]
    async with httpx.AsyncClient(
        base_url=mesh.base_url, headers=mesh.headers(Role.PLATFORM_ADMIN), timeout=30
    ) as c:
        assert (await c.get(f"{API}/tenants/{tenant}")).status_code == 200
        assert (
            await c.get(f"{API}/tenants/{tenant}/usage", params={"meter": "api_calls"})
        ).status_code == 200
        assert (await c.get(f"{API}/tenants/{tenant}/objects")).status_code == 403
        r = await c.post(
            f"{API}/tenants/{tenant}/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
        )
        assert r.status_code == 403


async def test_grpc_through_envoy_and_internal_rpcs_blocked(
    mesh: RunningMesh, tenants: tuple[str, str]
) -> None:
    tenant = tenants[0]
    async with grpc.aio.insecure_channel(mesh.grpc_target) as channel:
        stub = storage_service_pb2_grpc.StorageServiceStub(channel)
        key = {"collection": "grpc", "partition_key": "p", "sort_key": "s"}
        put = await stub.PutItem(
            items_pb2.PutItemRequest(tenant_id=tenant, item=items_pb2.Item(**key)),
            metadata=mesh.metadata(Role.MEMBER, tenant),
        )
        got = await stub.GetItem(
            items_pb2.GetItemRequest(tenant_id=tenant, **key), metadata=mesh.metadata(Role.MEMBER, tenant)
        )
        assert got.etag == put.etag
        directory = directory_pb2_grpc.TenantDirectoryServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await directory.ResolveTenant(
                directory_pb2.ResolveTenantRequest(tenant_id=tenant), metadata=mesh.metadata(Role.SERVICE)
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Directly on the tenant server the service token works: Envoy is what keeps it internal.
    async with direct_channel(mesh.address("tenant")) as channel:
        directory = directory_pb2_grpc.TenantDirectoryServiceStub(channel)
        answer = await directory.ResolveTenant(
            directory_pb2.ResolveTenantRequest(tenant_id=tenant), metadata=mesh.metadata(Role.SERVICE)
        )
        assert answer.tenant_id == tenant


def _grpcurl() -> str:
    return str(Path(sys.executable).parent / "grpcurl")


def test_grpcurl_through_envoy_with_the_descriptor_set(mesh: RunningMesh, tenants: tuple[str, str]) -> None:
    tenant = tenants[0]
    [(_, auth)] = mesh.metadata(Role.MEMBER, tenant)
    base = [_grpcurl(), "-plaintext", "-protoset", str(DESCRIPTOR_PATH)]
    listed = subprocess.run([*base, "list"], capture_output=True, text=True, timeout=30)
    assert "makoto.storage.v1.StorageService" in listed.stdout, listed.stderr
    call = subprocess.run(
        [
            *base,
            "-H",
            f"authorization: {auth}",
            "-d",
            json.dumps({"tenant_id": tenant}),
            mesh.grpc_target,
            "makoto.llm.v1.LLMService/ListModels",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert call.returncode == 0, call.stderr
    assert "sim-chat" in call.stdout
    denied = subprocess.run(
        [
            *base,
            "-d",
            json.dumps({"tenant_id": tenant}),
            mesh.grpc_target,
            "makoto.llm.v1.LLMService/ListModels",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert denied.returncode != 0 and "Unauthenticated" in denied.stderr
