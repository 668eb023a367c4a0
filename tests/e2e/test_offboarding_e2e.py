"""Offboarding end to end, through Envoy, for an AWS tenant and an Azure tenant.

A mesh whose TenantService provisions managed resources on emulated clouds: moto (S3 bucket,
DynamoDB table, the platform's Secrets Manager path and Cognito user pool), Azurite (Blob
container), the Cosmos DB emulator (database) and the Key Vault fake (the platform's vault; see
tests/contract/fake_key_vault.py: no Microsoft emulator exists). Each tenant is onboarded over
REST, gets a user (Cognito) and an API key, writes objects and items, is offboarded (OFFBOARDING:
data plane refused), its export is downloaded through the signed link without a token and checked
(archive sha256, every object's bytes and sha256, every item), then erased (DeleteTenant). Then
each backend is asked with its own SDK whether anything of the tenant remains, and the platform's
stores (tenant DB rows, metering usage rows; invoices kept) are checked directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import sqlite3
import tarfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aioboto3
import httpx
import pytest
import pytest_asyncio
from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.secrets.aio import SecretClient

from services.common.identity import Role
from services.common.secrets.azure_kv_backend import StaticTokenCredential
from tests.contract import emulators
from tests.contract.fake_key_vault import FakeKeyVault, make_tls
from tests.contract.secret_backends import VAULT_TOKEN
from tests.e2e import multi_cloud_support as clouds_
from tests.mesh_fixture import RunningMesh, start_mesh, stop_mesh

pytestmark = pytest.mark.e2e
API = "/api/v1"
CREDS = {
    "aws_access_key_id": emulators.MOTO_CREDENTIALS["access_key_id"],
    "aws_secret_access_key": emulators.MOTO_CREDENTIALS["secret_access_key"],
    "region_name": "us-east-1",
}


@dataclass
class Env:
    mesh: RunningMesh
    clouds: clouds_.Clouds
    vault: FakeKeyVault
    ca_bundle: Path
    pool: str
    http: httpx.AsyncClient


@pytest_asyncio.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    root = tmp_path_factory.mktemp("offboard-mesh")
    async with clouds_.running_clouds() as clouds:
        tls = make_tls(root / "vault-tls")
        vault = FakeKeyVault(tls, token=VAULT_TOKEN)
        await vault.start()
        try:
            async with aioboto3.Session().client(
                "cognito-idp", endpoint_url=clouds.moto.endpoint, **CREDS
            ) as idp:
                pool = (
                    await idp.create_user_pool(
                        PoolName=f"makoto-offboard-{uuid.uuid4().hex[:6]}",
                        Schema=[
                            {"Name": "tenant_id", "AttributeDataType": "String", "Mutable": True},
                            {"Name": "role", "AttributeDataType": "String", "Mutable": True},
                        ],
                    )
                )["UserPool"]["Id"]
            extra = {
                "MAKOTO_AWS_ENDPOINT_URL": clouds.moto.endpoint,
                "MAKOTO_AWS_REGION": "us-east-1",
                "MAKOTO_AWS_ACCESS_KEY_ID": CREDS["aws_access_key_id"],
                "MAKOTO_AWS_SECRET_ACCESS_KEY": CREDS["aws_secret_access_key"],
                "MAKOTO_AWS_COGNITO_USER_POOL_ID": pool,
                "MAKOTO_AWS_PROVISION_SECRETS_PATH": "true",
                "MAKOTO_AZURE_TENANT_KEY_VAULT_URL": vault.url,
                "MAKOTO_AZURE_KV_ACCESS_TOKEN": VAULT_TOKEN,
                "MAKOTO_AZURE_KV_CA_BUNDLE": str(tls.cert),
                # The fake's challenge names vault.azure.net, not 127.0.0.1.
                "MAKOTO_AZURE_KV_VERIFY_CHALLENGE_RESOURCE": "false",
            }
            mesh = await asyncio.to_thread(start_mesh, root, extra_env=extra)
            try:
                async with httpx.AsyncClient(base_url=mesh.base_url, timeout=60) as http:
                    yield Env(mesh, clouds, vault, tls.cert, pool, http)
            finally:
                await asyncio.to_thread(stop_mesh, mesh)
        finally:
            await vault.stop()


def _seeded(env: Env, name: str) -> clouds_.TenantSpec:
    """A fresh tenant spec with its credentials stored under its own tenant-scoped names."""
    specs = clouds_.tenant_specs(env.clouds)
    clouds_.seed_secrets(env.mesh.settings, env.clouds, specs)
    return specs[name]


def managed(spec: clouds_.TenantSpec) -> dict[str, Any]:
    """The spec's bindings with the platform creating (and so erasing) the resources."""
    body = spec.create_body()
    for kind in ("objectStore", "itemStore"):
        options = dict(body["bindings"][kind].get("options", {}))
        options.pop("auto_provision", None)
        options["managed"] = "true"
        body["bindings"][kind]["options"] = options
    return body


def rows(path: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def eventually(check: Any, what: str, timeout: float = 60.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


OBJECTS = {
    "docs/readme.txt": b"hello from the tenant\n",
    "data/blob.bin": bytes(range(256)) * 700,  # 179 KiB, binary
}
ITEMS = {
    ("orders", "cust-1", "2026-01-01"): {
        "total": {"stringValue": "12.50"},
        "n": {"intValue": "3"},
        "price": {"decimalValue": "12.50"},
    },
    ("orders", "cust-1", "2026-02-01"): {"total": {"stringValue": "7.00"}},
    ("profiles", "cust-1", "main"): {"name": {"stringValue": "Ada"}},
}


async def use_tenant(env: Env, tenant_id: str) -> None:
    headers = env.mesh.headers(Role.TENANT_ADMIN, tenant_id)
    root = f"{API}/tenants/{tenant_id}"
    for key, data in OBJECTS.items():
        r = await env.http.put(
            f"{root}/objects/{key}",
            content=data,
            headers={**headers, "content-type": "application/octet-stream"},
        )
        assert r.status_code == 200, r.text
    for (collection, pk, sk), attributes in ITEMS.items():
        r = await env.http.put(
            f"{root}/collections/{collection}/partitions/{pk}/items/{sk}",
            json={"attributes": attributes},
            headers=headers,
        )
        assert r.status_code == 200, r.text


async def offboard_and_download(env: Env, tenant_id: str) -> tuple[str, dict[str, Any]]:
    """OffboardTenant, wait for the export, check the data plane is closed, download and verify
    the archive. Returns the operation id and the export info."""
    admin = env.mesh.headers(Role.PLATFORM_ADMIN)
    tenant_admin = env.mesh.headers(Role.TENANT_ADMIN, tenant_id)
    r = await env.http.post(f"{API}/admin/tenants/{tenant_id}:offboard", json={}, headers=admin)
    assert r.status_code == 200, r.text
    operation_id = r.json()["name"].rsplit("/", 1)[1]
    assert operation_id.startswith("offboard-")
    assert r.json().get("done") is not True

    tenant = (await env.http.get(f"{API}/tenants/{tenant_id}", headers=admin)).json()
    assert tenant["state"] == "TENANT_STATE_OFFBOARDING"

    # The data plane refuses the tenant from now on (the directory's state check).
    # (as soon as the directory's cached answer is refreshed: push, else its TTL).
    async def refused() -> httpx.Response | None:
        r = await env.http.get(f"{API}/tenants/{tenant_id}/objects/docs/readme.txt", headers=tenant_admin)
        return r if r.status_code != 200 else None

    answer = await eventually(refused, "the data plane to refuse the OFFBOARDING tenant", timeout=15)
    assert answer.status_code in (400, 412), answer.text
    assert "TENANT_NOT_ACTIVE" in answer.text

    async def export_ready() -> dict[str, Any] | None:
        got = await env.http.get(f"{API}/tenants/{tenant_id}/operations/{operation_id}", headers=tenant_admin)
        assert got.status_code == 200, got.text
        metadata = got.json()["metadata"]
        steps = {s["name"]: s["state"] for s in metadata.get("steps", [])}
        assert steps.get("offboard.export") != "STEP_STATE_FAILED", metadata
        return metadata.get("export") if steps.get("offboard.export") == "STEP_STATE_DONE" else None

    export = await eventually(export_ready, "the export")
    assert export["downloadUri"].startswith("/api/v1/exports:download?token=")
    assert int(export["objectCount"]) == len(OBJECTS) and int(export["itemCount"]) == len(ITEMS)

    # No bearer token: the signed link is the credential. A tampered link is refused.
    tampered = export["downloadUri"][:-3] + ("AAA" if not export["downloadUri"].endswith("AAA") else "BBB")
    assert (await env.http.get(tampered)).status_code == 403
    got = await env.http.get(export["downloadUri"])
    assert got.status_code == 200, got.text[:300]
    assert got.headers["content-type"].startswith("application/gzip")
    body = got.content
    assert len(body) == int(export["sizeBytes"])
    assert hashlib.sha256(body).hexdigest() == export["sha256"]
    verify_archive(body, tenant_id)
    return operation_id, export


def verify_archive(body: bytes, tenant_id: str) -> None:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest["tenant_id"] == tenant_id
        objects = {o["key"]: o for o in manifest["objects"]}
        assert set(objects) == set(OBJECTS)
        for key, data in OBJECTS.items():
            member = tar.extractfile(f"objects/{key}")
            assert member is not None
            content = member.read()
            assert content == data
            assert (
                objects[key]["sha256"]
                == hashlib.sha256(data).hexdigest()
                == hashlib.sha256(content).hexdigest()
            )
        found: dict[tuple[str, str, str], dict[str, Any]] = {}
        for entry in manifest["items"]:
            member = tar.extractfile(entry["path"])
            assert member is not None
            raw = member.read()
            assert hashlib.sha256(raw).hexdigest() == entry["sha256"]
            for line in raw.decode().splitlines():
                item = json.loads(line)
                found[(item["collection"], item["partition_key"], item["sort_key"])] = item["attributes"]
        assert set(found) == set(ITEMS)
        # The platform's exact tagged JSON: an int stays an int, a decimal keeps its digits.
        assert found[("profiles", "cust-1", "main")] == {"m": {"name": "Ada"}}
        assert found[("orders", "cust-1", "2026-01-01")]["m"]["n"] == {"i": "3"}
        assert found[("orders", "cust-1", "2026-01-01")]["m"]["price"] == {"d": "12.50"}
        assert names == {
            "manifest.json",
            *(f"objects/{k}" for k in OBJECTS),
            *(e["path"] for e in manifest["items"]),
        }


async def onboard(env: Env, spec: clouds_.TenantSpec) -> str:
    admin = env.mesh.headers(Role.PLATFORM_ADMIN)
    r = await env.http.post(f"{API}/admin/tenants", json=managed(spec), headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "TENANT_STATE_ACTIVE", r.json()
    tid = spec.tenant_id
    tenant_admin = env.mesh.headers(Role.TENANT_ADMIN, tid)
    invited = await env.http.post(
        f"{API}/tenants/{tid}/users",
        json={"email": "ada@example.test", "role": "USER_ROLE_MEMBER"},
        headers=admin,
    )
    assert invited.status_code == 200, invited.text
    key = await env.http.post(
        f"{API}/auth/tenants/{tid}/api-keys",
        json={
            "displayName": "ci",
            "role": "USER_ROLE_MEMBER",
            "expireTime": (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        headers=tenant_admin,
    )
    assert key.status_code == 200, key.text
    await use_tenant(env, tid)
    return tid


async def platform_rows_before(env: Env, tid: str) -> None:
    data = env.mesh.settings.data_dir
    assert rows(data / "tenant.sqlite3", "SELECT count(*) FROM api_keys WHERE tenant_id = ?", tid) == [(1,)]

    async def usage() -> bool:
        return (
            rows(data / "metering.sqlite3", "SELECT count(*) FROM usage_events WHERE subject = ?", tid)[0][0]
            > 0
        )

    await eventually(usage, "the tenant's usage in metering")


async def erase(env: Env, tid: str, operation_id: str, export: dict[str, Any]) -> None:
    admin = env.mesh.headers(Role.PLATFORM_ADMIN)
    r = await env.http.delete(f"{API}/admin/tenants/{tid}", headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "TENANT_STATE_DELETED"
    op = (await env.http.get(f"{API}/tenants/{tid}/operations/{operation_id}", headers=admin)).json()
    assert op["done"] is True and op["response"]["state"] == "TENANT_STATE_DELETED", op
    steps = {s["name"]: s["state"] for s in op["metadata"]["steps"]}
    for step in (
        "offboard.suspend",
        "offboard.export",
        "erase.users",
        "erase.api_keys",
        "erase.resources",
        "erase.usage",
        "erase.exports",
    ):
        assert steps[step] == "STEP_STATE_DONE", (step, steps)
    assert "downloadUri" not in op["metadata"].get("export", {})
    # The old link no longer works: the tenant is gone and so is the archive.
    assert (await env.http.get(export["downloadUri"])).status_code in (404, 412)
    assert not (env.mesh.settings.data_dir / "exports" / tid).exists()


async def platform_rows_after(env: Env, tid: str) -> None:
    data = env.mesh.settings.data_dir
    tenant_db, metering_db = data / "tenant.sqlite3", data / "metering.sqlite3"
    assert rows(tenant_db, "SELECT count(*) FROM api_keys WHERE tenant_id = ?", tid) == [(0,)]
    assert rows(tenant_db, "SELECT count(*) FROM users WHERE tenant_id = ?", tid) == [(0,)]
    ((state, bindings, name),) = rows(
        tenant_db, "SELECT state, bindings, display_name FROM tenants WHERE tenant_id = ?", tid
    )
    assert (state, json.loads(bindings), name) == ("DELETED", {}, "")
    # Usage erased, and late events (spooled before the erasure) are not stored afterwards.
    await asyncio.sleep(3)
    assert rows(metering_db, "SELECT count(*) FROM usage_events WHERE subject = ?", tid) == [(0,)]
    months = rows(metering_db, "SELECT month FROM kept_invoices WHERE tenant_id = ?", tid)
    assert months, "the tenant's invoices must be kept"
    admin = env.mesh.headers(Role.PLATFORM_ADMIN)
    invoice = await env.http.get(f"{API}/tenants/{tid}/invoices/{months[-1][0]}", headers=admin)
    assert invoice.status_code == 200, invoice.text
    assert invoice.json()["final"] is True


async def cognito_remains(env: Env, tid: str) -> dict[str, Any]:
    async with aioboto3.Session().client(
        "cognito-idp", endpoint_url=env.clouds.moto.endpoint, **CREDS
    ) as idp:
        groups = [g["GroupName"] for g in (await idp.list_groups(UserPoolId=env.pool))["Groups"]]
        users = [
            u["Username"]
            for u in (await idp.list_users(UserPoolId=env.pool))["Users"]
            if {"Name": "custom:tenant_id", "Value": tid} in u.get("Attributes", [])
        ]
    return {"group": f"tenant-{tid}" in groups, "users": users}


async def test_an_aws_tenant_is_offboarded_exported_and_nothing_remains(env: Env) -> None:
    spec = _seeded(env, "aws")
    tid = await onboard(env, spec)
    table = f"makoto-{tid}-items"
    assert spec.bucket in await clouds_.s3_buckets(env.clouds)
    assert table in await clouds_.dynamodb_tables(env.clouds)
    assert await cognito_remains(env, tid) == {"group": True, "users": [f"{tid}:ada@example.test"]}
    await platform_rows_before(env, tid)

    operation_id, export = await offboard_and_download(env, tid)
    await erase(env, tid, operation_id, export)

    assert spec.bucket not in await clouds_.s3_buckets(env.clouds)
    assert table not in await clouds_.dynamodb_tables(env.clouds)
    async with aioboto3.Session().client(
        "secretsmanager", endpoint_url=env.clouds.moto.endpoint, **CREDS
    ) as sm:
        names = [s["Name"] for s in (await sm.list_secrets(IncludePlannedDeletion=True))["SecretList"]]
    assert not [n for n in names if n.startswith(f"makoto/tenants/{tid}/")]
    assert await cognito_remains(env, tid) == {"group": False, "users": []}
    await platform_rows_after(env, tid)


async def test_an_azure_tenant_is_offboarded_exported_and_nothing_remains(env: Env) -> None:
    spec = _seeded(env, "azure")
    tid = await onboard(env, spec)
    prefix = f"makoto-tenant-{tid}--"
    assert spec.bucket in await clouds_.blob_containers(env.clouds)
    assert spec.item_location in await clouds_.cosmos_databases(env.clouds)

    async def vault_names() -> tuple[list[str], bool]:
        """(live secret names of the tenant, whether its marker is purged too)."""
        async with SecretClient(
            env.vault.url,
            StaticTokenCredential(VAULT_TOKEN),
            verify_challenge_resource=False,
            connection_verify=str(env.ca_bundle),
        ) as client:
            live = [p.name async for p in client.list_properties_of_secrets() if p.name.startswith(prefix)]
            purged = True
            with contextlib.suppress(ResourceNotFoundError):
                await client.get_deleted_secret(f"{prefix}tenant")
                purged = False
            return live, purged

    assert await vault_names() == ([f"{prefix}tenant"], True)
    await platform_rows_before(env, tid)

    operation_id, export = await offboard_and_download(env, tid)
    await erase(env, tid, operation_id, export)

    assert spec.bucket not in await clouds_.blob_containers(env.clouds)
    assert spec.item_location not in await clouds_.cosmos_databases(env.clouds)
    # Deleted and purged: not even a soft-deleted copy remains.
    assert await vault_names() == ([], True)
    assert await cognito_remains(env, tid) == {"group": False, "users": []}
    await platform_rows_after(env, tid)


async def test_erasure_waits_until_the_invoices_can_be_kept(env: Env) -> None:
    """A tenant whose price plan does not exist cannot be invoiced: DeleteTenant refuses to erase
    its usage (400 ERASURE_BLOCKED, nothing erased in metering) until the plan exists."""
    admin = env.mesh.headers(Role.PLATFORM_ADMIN)
    tid = f"ob-plan-{uuid.uuid4().hex[:8]}"
    plan = f"plan-{uuid.uuid4().hex[:8]}"
    r = await env.http.post(
        f"{API}/admin/tenants", json={"tenantId": tid, "pricePlanId": plan}, headers=admin
    )
    assert r.status_code == 200, r.text
    await use_tenant(env, tid)
    metering_db = env.mesh.settings.data_dir / "metering.sqlite3"

    def usage() -> int:
        return int(rows(metering_db, "SELECT count(*) FROM usage_events WHERE subject = ?", tid)[0][0])

    async def has_usage() -> bool:
        return usage() > 0

    await eventually(has_usage, "the tenant's usage")
    blocked = await env.http.delete(f"{API}/admin/tenants/{tid}", headers=admin)
    assert blocked.status_code == 400, blocked.text
    assert blocked.json()["details"][0]["reason"] == "ERASURE_BLOCKED"
    assert usage() > 0  # nothing erased while the invoices cannot be kept

    r = await env.http.put(
        f"{API}/admin/price-plans/{plan}",
        json={
            "planId": plan,
            "currency": "EUR",
            "prices": [{"meter": "api_calls", "unitPrice": "0.01", "unit": "call"}],
        },
        headers=admin,
    )
    assert r.status_code == 200, r.text
    done = await env.http.delete(f"{API}/admin/tenants/{tid}", headers=admin)
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "TENANT_STATE_DELETED"
    assert usage() == 0
    assert rows(metering_db, "SELECT count(*) FROM kept_invoices WHERE tenant_id = ?", tid)[0][0] >= 1
