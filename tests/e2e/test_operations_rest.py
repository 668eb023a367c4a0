"""Provisioning operations over REST through Envoy: a tenant's admin lists and reads the
google.longrunning.Operation of its onboarding with step-level progress; another tenant's
admin and members are refused; an unknown operation is 404."""

from __future__ import annotations

import uuid

import httpx
import pytest

from services.common.identity import Role
from tests.e2e.conftest import RunningMesh

pytestmark = pytest.mark.e2e


async def test_onboarding_operation_is_readable_over_rest(mesh: RunningMesh) -> None:
    tenant = f"op-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=mesh.base_url + "/api/v1", timeout=30) as c:
        created = await c.post(
            "/admin/tenants", json={"tenantId": tenant}, headers=mesh.headers(Role.PLATFORM_ADMIN)
        )
        assert created.status_code == 200, created.text
        assert created.json()["state"] == "TENANT_STATE_ACTIVE"

        admin = mesh.headers(Role.TENANT_ADMIN, tenant)
        listed = await c.get(f"/tenants/{tenant}/operations", headers=admin)
        assert listed.status_code == 200, listed.text
        [operation] = listed.json()["operations"]
        assert operation["name"].startswith(f"tenants/{tenant}/operations/provision-{tenant}-")
        assert operation["done"] is True
        metadata = operation["metadata"]
        assert metadata["@type"] == "type.googleapis.com/makoto.tenant.v1.ProvisioningMetadata"
        assert [(s["name"], s["state"]) for s in metadata["steps"]] == [
            ("local.tenant_directory", "STEP_STATE_DONE")
        ]
        assert operation["response"]["@type"] == "type.googleapis.com/makoto.tenant.v1.Tenant"
        assert operation["response"]["tenantId"] == tenant

        operation_id = operation["name"].rsplit("/", 1)[1]
        one = await c.get(f"/tenants/{tenant}/operations/{operation_id}", headers=admin)
        assert one.status_code == 200 and one.json() == operation

        missing = await c.get(f"/tenants/{tenant}/operations/provision-nope-0", headers=admin)
        assert missing.status_code == 404, missing.text
        other = await c.get(
            f"/tenants/{tenant}/operations", headers=mesh.headers(Role.TENANT_ADMIN, "someone-else")
        )
        assert other.status_code == 403
        member = await c.get(f"/tenants/{tenant}/operations", headers=mesh.headers(Role.MEMBER, tenant))
        assert member.status_code == 403
