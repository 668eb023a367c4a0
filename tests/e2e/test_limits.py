"""Per-tenant limits through the running mesh (Envoy, the four services, the machine's Redis with
the mesh's own key prefix): the limits API, the API rate limit over REST and gRPC, refused calls
not billed, and one tenant's exhaustion invisible to another."""

from __future__ import annotations

import asyncio
import time

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

from services.common.identity import Role
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import create_tenant
from tests.support import direct_channel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

API = "/api/v1"


def item_path(tenant: str, sk: str = "s") -> str:
    return f"{API}/tenants/{tenant}/collections/c/partitions/p/items/{sk}"


async def test_tenants_read_their_limits_and_admins_set_overrides(mesh: RunningMesh) -> None:
    tenant, other = create_tenant(mesh, "lim-read"), create_tenant(mesh, "lim-other")
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        r = await c.get(f"{API}/tenants/{tenant}/limits", headers=mesh.headers(Role.MEMBER, tenant))
        assert r.status_code == 200, r.text
        body = r.json()
        effective = body["effective"]
        # Safe defaults: a new tenant is limited, not unlimited.
        assert effective["api"]["requestsPerSecond"] > 0 and effective["api"]["burst"] > 0
        assert int(effective["llmMonthlyTokens"]) > 0 and int(effective["storageQuotaBytes"]) > 0
        assert body["llmBudget"]["tokensUsed"] in ("0", 0, None) or "tokensUsed" not in body["llmBudget"]
        # Another tenant's token cannot read them; a member cannot set them.
        r = await c.get(f"{API}/tenants/{tenant}/limits", headers=mesh.headers(Role.MEMBER, other))
        assert r.status_code == 403
        overrides = {"api": {"requestsPerSecond": 5, "burst": 7}, "llmMonthlyTokens": "1234"}
        r = await c.put(
            f"{API}/admin/tenants/{tenant}/limits",
            json=overrides,
            headers=mesh.headers(Role.TENANT_ADMIN, tenant),
        )
        assert r.status_code == 403
        r = await c.put(
            f"{API}/admin/tenants/{tenant}/limits", json=overrides, headers=mesh.headers(Role.PLATFORM_ADMIN)
        )
        assert r.status_code == 200, r.text
        assert r.json()["effective"]["api"] == {"requestsPerSecond": 5, "burst": 7}
        assert r.json()["llmBudget"]["tokensRemaining"] == "1234"
        # Bad input: a clear 400, nothing changed.
        r = await c.put(
            f"{API}/admin/tenants/{tenant}/limits",
            json={"api": {"requestsPerSecond": -1, "burst": 0}},
            headers=mesh.headers(Role.PLATFORM_ADMIN),
        )
        assert r.status_code == 400
        r = await c.get(f"{API}/tenants/{tenant}/limits", headers=mesh.headers(Role.TENANT_ADMIN, tenant))
        assert r.json()["overrides"]["api"] == {"requestsPerSecond": 5, "burst": 7}
        # The other tenant still has the defaults.
        r = await c.get(f"{API}/tenants/{other}/limits", headers=mesh.headers(Role.MEMBER, other))
        assert r.json()["effective"]["api"] == effective["api"]


async def _until_limited(
    c: httpx.AsyncClient, path: str, headers: dict[str, str], seconds: float
) -> tuple[httpx.Response, int]:
    """Call until a 429 (overrides reach the replicas within their limits cache TTL); the 429 and
    how many calls answered 200 before it."""
    deadline = time.monotonic() + seconds
    ok = 0
    while time.monotonic() < deadline:
        r = await c.get(path, headers=headers)
        if r.status_code == 429:
            return r, ok
        assert r.status_code == 200, r.text
        ok += 1
        await asyncio.sleep(0.05)
    raise AssertionError("never rate limited")


def _details(err: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    for d in status.details:
        if d.Is(info.DESCRIPTOR):
            d.Unpack(info)
        elif d.Is(retry.DESCRIPTOR):
            d.Unpack(retry)
    return info, retry


async def test_rate_limit_over_rest_and_grpc_spares_other_tenants_and_bills_nothing_refused(
    mesh: RunningMesh,
) -> None:
    noisy, quiet = create_tenant(mesh, "lim-noisy"), create_tenant(mesh, "lim-quiet")
    noisy_h, quiet_h = mesh.headers(Role.MEMBER, noisy), mesh.headers(Role.MEMBER, quiet)
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        for tenant, h in ((noisy, noisy_h), (quiet, quiet_h)):
            r = await c.put(item_path(tenant), json={"attributes": {"n": {"intValue": "1"}}}, headers=h)
            assert r.status_code == 200, r.text
        # Allowed REST answers carry the limit headers.
        answered = 1
        r = await c.get(item_path(noisy), headers=noisy_h)
        assert r.status_code == 200
        assert int(r.headers["x-ratelimit-limit"]) > 0 and "x-ratelimit-remaining" in r.headers
        r = await c.put(
            f"{API}/admin/tenants/{noisy}/limits",
            json={"api": {"requestsPerSecond": 1, "burst": 3}},
            headers=mesh.headers(Role.PLATFORM_ADMIN),
        )
        assert r.status_code == 200
        limited, ok = await _until_limited(c, item_path(noisy), noisy_h, seconds=20)
        answered += ok
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.headers["x-ratelimit-limit"] == "3" and limited.headers["x-ratelimit-remaining"] == "0"
        body = limited.json()
        assert body["code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        reasons = [d.get("reason") for d in body["details"]]
        assert "TENANT_RATE_LIMITED" in reasons
        assert any(d["@type"].endswith("RetryInfo") for d in body["details"])

        # The quiet tenant is untouched, right now.
        for _ in range(10):
            r = await c.get(item_path(quiet), headers=quiet_h)
            assert r.status_code == 200

        # gRPC, directly on the service port (no Envoy): the same limit, the same answer.
        async with direct_channel(mesh.address("storage")) as channel:
            stub = storage_service_pb2_grpc.StorageServiceStub(channel)
            request = items_pb2.GetItemRequest(
                tenant_id=noisy, collection="c", partition_key="p", sort_key="s"
            )
            md = mesh.metadata(Role.MEMBER, noisy)
            codes = []
            for _ in range(8):
                try:
                    await stub.GetItem(request, metadata=md)
                    codes.append(grpc.StatusCode.OK)
                    answered += 1
                except grpc.aio.AioRpcError as err:
                    codes.append(err.code())
                    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    info, retry = _details(err)
                    assert info.reason == "TENANT_RATE_LIMITED" and retry.retry_delay.ToNanoseconds() > 0
                    assert dict(err.trailing_metadata() or ())["retry-after"]
            assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 5

    # Refused calls are not billed: the api_calls metered for GetItem equal the 200 answers.
    # (Counted after the spools delivered: poll until two reads agree.)
    async with direct_channel(mesh.address("metering")) as channel:
        metering = metering_pb2_grpc.MeteringServiceStub(channel)

        async def metered() -> dict[str, int]:
            rows = await metering.QueryUsage(
                metering_pb2.QueryUsageRequest(
                    tenant_id=noisy, meter="api_calls", group_by=["method", "status"]
                ),
                metadata=mesh.metadata(Role.PLATFORM_ADMIN),
            )
            return {f"{r.group['method']}/{r.group['status']}": r.value for r in rows.rows}

        seen: dict[str, int] = {}
        for _ in range(60):
            seen = await metered()
            if seen.get("GetItem/OK") == answered:
                break
            await asyncio.sleep(0.5)
    assert seen.get("GetItem/OK") == answered, (seen, answered)
    assert not any(k.endswith("RESOURCE_EXHAUSTED") for k in seen), seen
