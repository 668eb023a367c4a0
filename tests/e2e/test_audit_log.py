"""The tamper-evident audit log against the real mesh: decisions of every service, allowed and
refused (also for a caller that bypasses Envoy), reach the tenant's hash chain through the usage
spool; tenant-admins read their own log, platform-admins any; `makoto audit verify` accepts the
chain and names the record an edit of the database broke. Operator calls that name no tenant are
in the platform's own chain (GET /api/v1/admin/audit, `makoto audit list|verify --platform`)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc
from typer.testing import CliRunner

from services.cli import app
from services.common.identity import Role
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import create_tenant
from tests.support import direct_channel

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

API = "/api/v1"
ITEM = "makoto.storage.v1.StorageService.GetItem"


def _verify(mesh: RunningMesh, tenant: str) -> tuple[int, dict[str, Any]]:
    """`makoto audit verify` in this process (as the CLI runs it, minus a Python start-up)."""
    token = mesh.headers(Role.PLATFORM_ADMIN)["authorization"].removeprefix("Bearer ")
    done = CliRunner().invoke(app, ["audit", "verify", tenant, "--url", mesh.base_url, "--token", token])
    return done.exit_code, json.loads(done.stdout)


async def _records(
    c: httpx.AsyncClient, tenant: str, headers: dict[str, str], until: Any
) -> list[dict[str, Any]]:
    """The tenant's records once `until(records)` holds (events travel through the spool)."""
    deadline = time.monotonic() + 15
    while True:
        r = await c.get(f"{API}/tenants/{tenant}/audit", headers=headers, params={"pageSize": 1000})
        assert r.status_code == 200, r.text
        records: list[dict[str, Any]] = r.json().get("records", [])
        if until(records) or time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.2)


async def test_decisions_are_chained_and_verified(mesh: RunningMesh) -> None:
    tenant, other = create_tenant(mesh, "audit"), create_tenant(mesh, "intruder")
    admin = mesh.headers(Role.TENANT_ADMIN, tenant)
    item = f"{API}/tenants/{tenant}/collections/notes/partitions/p/items/secret-plan"
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        r = await c.put(
            item, json={"attributes": {"body": {"stringValue": "TOP-SECRET-CONTENT"}}}, headers=admin
        )
        assert r.status_code == 200
        assert (await c.get(item, headers=admin)).status_code == 200
        # An API key: its creation and its token's use are in the log, its secret is not.
        expiry = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
        r = await c.post(
            f"{API}/auth/tenants/{tenant}/api-keys",
            json={"role": "USER_ROLE_MEMBER", "expireTime": expiry},
            headers=admin,
        )
        key_id, secret = r.json()["apiKey"]["keyId"], r.json()["secret"]
        issued = (await c.post(f"{API}/auth/token", json={"apiKey": secret})).json()["accessToken"]
        assert (await c.get(item, headers={"authorization": f"Bearer {issued}"})).status_code == 200

    # Another tenant's member goes around Envoy, straight to StorageService: refused and audited
    # under the tenant it targeted.
    intruder = mesh.metadata(Role.MEMBER, other)
    async with direct_channel(mesh.address("storage")) as channel:
        storage = storage_service_pb2_grpc.StorageServiceStub(channel)
        request = items_pb2.GetItemRequest(
            tenant_id=tenant, collection="notes", partition_key="p", sort_key="secret-plan"
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await storage.GetItem(request, metadata=intruder)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        records = await _records(
            c,
            tenant,
            admin,
            lambda rs: (
                any(r.get("outcome") == "PERMISSION_DENIED" for r in rs)
                and sum(1 for r in rs if r.get("apiKeyId")) >= 2
            ),
        )
        by_method = [(r["method"], r["outcome"]) for r in records]
        assert ("makoto.storage.v1.StorageService.PutItem", "OK") in by_method
        assert (ITEM, "OK") in by_method
        assert ("makoto.tenant.v1.TenantService.CreateApiKey", "OK") in by_method
        assert ("makoto.tenant.v1.TenantService.CreateTenant", "OK") in by_method  # the admin op
        refused = [r for r in records if r["outcome"] == "PERMISSION_DENIED"]
        assert refused and refused[0]["method"] == ITEM and refused[0]["role"] == "member"
        assert "sort_key=secret-plan" in refused[0]["resource"]
        used = [(r["method"], r["outcome"]) for r in records if r.get("apiKeyId") == key_id]
        # (Each service's events arrive through its own spool: the chain is in arrival order.)
        assert sorted(used) == sorted([("makoto.tenant.v1.TenantService.ExchangeApiKey", "OK"), (ITEM, "OK")])
        assert {r["principal"] for r in records if r.get("apiKeyId") == key_id} == {f"apikey:{key_id}"}
        for r in records:
            assert r["seq"] and r["hash"] and r["prevHash"] and r["timeUs"] and r["principal"]
        text = json.dumps(records)
        assert "TOP-SECRET-CONTENT" not in text and secret not in text and issued not in text

        # Who may read it: the tenant's admins and the operator; not members, not other tenants.
        assert (
            await c.get(f"{API}/tenants/{tenant}/audit", headers=mesh.headers(Role.MEMBER, tenant))
        ).status_code == 403
        foreign = mesh.headers(Role.TENANT_ADMIN, other)
        assert (await c.get(f"{API}/tenants/{tenant}/audit", headers=foreign)).status_code == 403
        operator = mesh.headers(Role.PLATFORM_ADMIN)
        assert (await c.get(f"{API}/tenants/{tenant}/audit", headers=operator)).status_code == 200

    code, verdict = _verify(mesh, tenant)
    assert code == 0 and verdict["ok"] is True and verdict["records"] >= len(records), verdict

    # Someone with the database rewrites the refusal as OK: verify names that record.
    db = mesh.settings.data_dir / "metering.sqlite3"
    seq = int(refused[0]["seq"])
    with sqlite3.connect(db, timeout=10) as conn:
        conn.execute("UPDATE audit_records SET outcome='OK' WHERE tenant_id=? AND seq=?", (tenant, seq))
    try:
        code, verdict = _verify(mesh, tenant)
        assert code == 1 and verdict["ok"] is False and verdict["badSeq"] == seq, verdict
    finally:
        with sqlite3.connect(db, timeout=10) as conn:
            conn.execute(
                "UPDATE audit_records SET outcome='PERMISSION_DENIED' WHERE tenant_id=? AND seq=?",
                (tenant, seq),
            )
    # ... and deleting it instead is seen too.
    with sqlite3.connect(db, timeout=10) as conn:
        conn.execute("DELETE FROM audit_records WHERE tenant_id=? AND seq=?", (tenant, seq))
    code, verdict = _verify(mesh, tenant)
    assert code == 1 and verdict["badSeq"] == seq + 1 and "missing" in verdict["reason"], verdict


def _cli(mesh: RunningMesh, *args: str) -> tuple[int, dict[str, Any]]:
    token = mesh.headers(Role.PLATFORM_ADMIN)["authorization"].removeprefix("Bearer ")
    done = CliRunner().invoke(app, ["audit", *args, "--url", mesh.base_url, "--token", token])
    return done.exit_code, json.loads(done.stdout)


async def test_platform_view(mesh: RunningMesh) -> None:
    """Operator calls that name no tenant go to the platform's own chain: a platform-admin reads
    it (REST, gRPC, `makoto audit list --platform`), tenant-admins cannot, and `makoto audit
    verify --platform` detects a modified record."""
    plan = f"audit-plan-{uuid.uuid4().hex[:8]}"
    operator = mesh.headers(Role.PLATFORM_ADMIN)
    tenant = create_tenant(mesh, "audit-view")
    set_plan = "makoto.metering.v1.MeteringService.SetPricePlan"
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        r = await c.put(
            f"{API}/admin/price-plans/{plan}",
            json={"planId": plan, "currency": "EUR", "prices": [{"meter": "api_calls", "unitPrice": "0.01"}]},
            headers=operator,
        )
        assert r.status_code == 200, r.text
        assert (await c.get(f"{API}/admin/tenants", headers=operator)).status_code == 200
        deadline = time.monotonic() + 15
        while True:
            r = await c.get(f"{API}/admin/audit", headers=operator, params={"pageSize": 1000})
            assert r.status_code == 200, r.text
            records: list[dict[str, Any]] = r.json().get("records", [])
            mine = [x for x in records if x["method"] == set_plan and x.get("resource") == f"plan_id={plan}"]
            listed = any(x["method"] == "makoto.tenant.v1.TenantService.ListTenants" for x in records)
            # (Each service's events come through its own spool.)
            if (mine and listed) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert mine and mine[0]["outcome"] == "OK" and mine[0]["role"] == "platform-admin", records
        assert listed, records
        # Not in the tenant's chain, and the tenant's own decisions not in the platform's.
        r = await c.get(f"{API}/tenants/{tenant}/audit", headers=operator, params={"pageSize": 1000})
        assert set_plan not in r.text
        # Who may read it: platform-admins only (Envoy 403; the service's own port refuses too).
        admin = mesh.headers(Role.TENANT_ADMIN, tenant)
        assert (await c.get(f"{API}/admin/audit", headers=admin)).status_code == 403
        assert (await c.get(f"{API}/tenants/platform/audit", headers=admin)).status_code == 403
        # "platform" is no tenant anyone can create.
        r = await c.post(f"{API}/admin/tenants", json={"tenantId": "platform"}, headers=operator)
        assert r.status_code == 400 and "TENANT_ID_RESERVED" in r.text, r.text

    async with mesh.channel(mesh.grpc_target) as ch:
        answer = await metering_pb2_grpc.MeteringServiceStub(ch).ListPlatformAuditRecords(
            metering_pb2.ListPlatformAuditRecordsRequest(page_size=1000),
            metadata=mesh.metadata(Role.PLATFORM_ADMIN),
        )
        assert any(r.method == set_plan and r.resource == f"plan_id={plan}" for r in answer.records)
    async with mesh.channel(mesh.address("metering")) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await metering_pb2_grpc.MeteringServiceStub(ch).ListPlatformAuditRecords(
                metering_pb2.ListPlatformAuditRecordsRequest(),
                metadata=mesh.metadata(Role.TENANT_ADMIN, tenant),
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    code, listed = _cli(mesh, "list", "--platform")
    assert code == 0 and listed["chain"] == "platform"
    assert any(x["method"] == set_plan for x in listed["records"])
    code, verdict = _cli(mesh, "verify", "--platform")
    assert code == 0 and verdict["ok"] is True and verdict["records"] >= len(records), verdict

    # Someone with the database rewrites the operator's call as refused: verify names it.
    db = mesh.settings.data_dir / "metering.sqlite3"
    seq = int(mine[0]["seq"])
    with sqlite3.connect(db, timeout=10) as conn:
        conn.execute(
            "UPDATE audit_records SET outcome='PERMISSION_DENIED' WHERE tenant_id='platform' AND seq=?",
            (seq,),
        )
    try:
        code, verdict = _cli(mesh, "verify", "--platform")
        assert code == 1 and verdict["ok"] is False and verdict["badSeq"] == seq, verdict
    finally:
        with sqlite3.connect(db, timeout=10) as conn:
            conn.execute("UPDATE audit_records SET outcome='OK' WHERE tenant_id='platform' AND seq=?", (seq,))
    code, verdict = _cli(mesh, "verify", "--platform")
    assert code == 0, verdict
