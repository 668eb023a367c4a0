"""OnboardTenant over REST through Envoy: onboarding an AWS tenant (moto) is a long-running
operation that answers at once and is polled with GetOperation while it runs.

The tenant's DynamoDB endpoint is a TCP fault proxy in SLOW mode in front of moto, so the table
step takes seconds: the test reads the operation RUNNING with the bucket step DONE and the table
step STARTED (step-level progress), then DONE with the Tenant ACTIVE as its response; a retry
with the same request_id answers the same operation. Resources checked with boto3.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import boto3
import httpx
import pytest

from services.common.identity import Role
from services.common.secrets import LocalSecretStore
from tests.contract.emulators import MOTO_CREDENTIALS, Emulator, moto_server  # noqa: F401
from tests.e2e.conftest import RunningMesh
from tests.fault_proxy import Mode, fault_proxy

pytestmark = pytest.mark.e2e

ProgressLog = list[tuple[bool, dict[str, str]]]


def _steps(operation: dict[str, Any]) -> dict[str, str]:
    return {s["name"].split(":")[0]: s["state"] for s in operation["metadata"].get("steps", [])}


async def test_onboarding_is_an_operation_polled_while_it_runs(
    mesh: RunningMesh,
    moto_server: Emulator,  # noqa: F811
) -> None:
    tid = f"onb-{uuid.uuid4().hex[:10]}"
    secret = f"tenants/{tid}/aws-keys"
    LocalSecretStore(mesh.settings).set(secret, json.dumps(MOTO_CREDENTIALS))
    host, port = moto_server.endpoint.removeprefix("http://").split(":")
    admin = mesh.headers(Role.PLATFORM_ADMIN)
    async with fault_proxy(host, int(port), delay=0.4) as proxy:
        await proxy.set_mode(Mode.SLOW)  # every DynamoDB round trip takes 0.8 s or more
        body = {
            "tenantId": tid,
            "cloudProvider": "CLOUD_PROVIDER_AWS",
            "region": "us-east-1",
            "bindings": {
                "objectStore": {
                    "backend": "OBJECT_BACKEND_S3",
                    "endpoint": moto_server.endpoint,
                    "region": "us-east-1",
                    "pathStyle": True,
                    "credentialsSecretRef": f"local://{secret}",
                    "options": {"managed": "true"},
                },
                "itemStore": {
                    "backend": "ITEM_BACKEND_DYNAMODB",
                    "endpoint": f"http://127.0.0.1:{proxy.port}",
                    "region": "us-east-1",
                    "credentialsSecretRef": f"local://{secret}",
                    "options": {"managed": "true"},
                },
            },
        }
        async with httpx.AsyncClient(base_url=mesh.base_url + "/api/v1", timeout=30) as c:
            started = time.monotonic()
            answer = await c.post(f"/admin/tenants:onboard?requestId=req-{tid}", json=body, headers=admin)
            answered_in = time.monotonic() - started
            assert answer.status_code == 200, answer.text
            operation = answer.json()
            assert operation["name"].startswith(f"tenants/{tid}/operations/provision-{tid}-")
            assert operation["done"] is False
            assert (
                operation["metadata"]["@type"] == "type.googleapis.com/makoto.tenant.v1.ProvisioningMetadata"
            )
            assert operation["metadata"]["kind"] == "PROVISION"
            # The tenant exists at once, PROVISIONING (its data plane not yet usable).
            tenant = await c.get(f"/tenants/{tid}", headers=admin)
            assert tenant.status_code == 200 and tenant.json()["state"] == "TENANT_STATE_PROVISIONING"

            # A retry of the same request answers the same operation and starts nothing new.
            again = await c.post(f"/admin/tenants:onboard?requestId=req-{tid}", json=body, headers=admin)
            assert again.status_code == 200, again.text
            assert again.json()["name"] == operation["name"]

            path = "/" + operation["name"]
            tenant_admin = mesh.headers(Role.TENANT_ADMIN, tid)
            seen: ProgressLog = []
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                polled = await c.get(path, headers=tenant_admin)
                assert polled.status_code == 200, polled.text
                current = polled.json()
                seen.append((current["done"], _steps(current)))
                if current["done"]:
                    break
                await asyncio.sleep(0.2)
            assert current["done"] is True, seen[-3:]
            assert "error" not in current, current.get("error")
            assert current["response"]["@type"] == "type.googleapis.com/makoto.tenant.v1.Tenant"
            assert current["response"]["state"] == "TENANT_STATE_ACTIVE"
            # Read while RUNNING, with the table step under way after the bucket step finished.
            running = [steps for done, steps in seen if not done]
            assert running, "the operation was never read while it ran"
            assert any(
                s.get("aws.s3_bucket") == "STEP_STATE_DONE"
                and s.get("aws.dynamodb_table") == "STEP_STATE_STARTED"
                for s in running
            ), running
            assert seen[-1][1] == {
                "local.tenant_directory": "STEP_STATE_DONE",
                "aws.s3_bucket": "STEP_STATE_DONE",
                "aws.dynamodb_table": "STEP_STATE_DONE",
            }
            # The call answered well before the slow step ended.
            assert answered_in < 5.0, answered_in
            tenant = await c.get(f"/tenants/{tid}", headers=admin)
            assert tenant.json()["state"] == "TENANT_STATE_ACTIVE"
            listed = await c.get(f"/tenants/{tid}/operations", headers=tenant_admin)
            assert [o["name"] for o in listed.json()["operations"]] == [operation["name"]]

            # Only a platform-admin onboards; a tenant-admin is refused at the edge.
            refused = await c.post(
                "/admin/tenants:onboard", json={**body, "tenantId": f"x{tid}"}, headers=tenant_admin
            )
            assert refused.status_code == 403, refused.text

    ddb = boto3.client(
        "dynamodb",
        endpoint_url=moto_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=MOTO_CREDENTIALS["access_key_id"],
        aws_secret_access_key=MOTO_CREDENTIALS["secret_access_key"],
    )
    pitr = ddb.describe_continuous_backups(TableName=f"makoto-{tid}-items")["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=MOTO_CREDENTIALS["access_key_id"],
        aws_secret_access_key=MOTO_CREDENTIALS["secret_access_key"],
    )
    assert s3.get_bucket_versioning(Bucket=f"makoto-{tid}-assets")["Status"] == "Enabled"
