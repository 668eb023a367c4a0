"""`makoto tenants …`, `makoto usage`, `makoto invoice` against the running mesh, as an operator
and a tenant would use them (in-process through typer's runner: the same code the `makoto`
script runs, without a Python start per command)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from services.cli import app
from services.common.identity import Role
from tests.e2e.conftest import RunningMesh
from tests.e2e.test_flows_rest import API, new_tenant_id, this_month

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def token(mesh: RunningMesh, role: Role, tenant: str | None = None) -> str:
    return mesh.headers(role, tenant)["authorization"].removeprefix("Bearer ")


def makoto(mesh: RunningMesh, *args: str, token: str) -> tuple[int, Any, str]:
    """Exit code, the JSON on stdout, and stderr (progress)."""
    result = CliRunner().invoke(app, [*args, "--url", mesh.base_url, "--token", token])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, json.loads(result.stdout), result.stderr


def test_operator_runs_a_tenants_lifecycle(mesh: RunningMesh) -> None:
    admin = token(mesh, Role.PLATFORM_ADMIN)
    first, second = new_tenant_id("cli-ops"), new_tenant_id("cli-ops")

    code, out, _ = makoto(
        mesh, "tenants", "create", first, "--name", "Ops Co", "--request-id", f"rid-{first}", token=admin
    )
    assert code == 0, out
    assert out["tenantId"] == first and out["displayName"] == "Ops Co"
    assert out["state"] == "TENANT_STATE_ACTIVE"
    # A request id already used for another tenant: the API's error, as JSON, exit 1.
    code, out, _ = makoto(mesh, "tenants", "create", second, "--request-id", f"rid-{first}", token=admin)
    assert code == 1 and out["code"] == 3 and "request_id" in out["message"], out  # INVALID_ARGUMENT
    code, out, _ = makoto(mesh, "tenants", "create", second, token=admin)
    assert code == 0, out

    code, out, _ = makoto(mesh, "tenants", "suspend", first, "--reason", "invoice unpaid", token=admin)
    assert code == 0 and out["state"] == "TENANT_STATE_SUSPENDED", out
    assert out["stateReason"] == "invoice unpaid"
    with httpx.Client(base_url=mesh.base_url, timeout=30) as c:
        r = c.get(f"{API}/tenants/{first}/objects", headers=mesh.headers(Role.MEMBER, first))
        assert r.status_code == 403, r.text
    code, out, _ = makoto(mesh, "tenants", "resume", first, token=admin)
    assert code == 0 and out["state"] == "TENANT_STATE_ACTIVE", out
    code, out, _ = makoto(mesh, "tenants", "get", first, token=admin)
    assert code == 0 and out["state"] == "TENANT_STATE_ACTIVE" and out["displayName"] == "Ops Co"

    # Every page as one list; each page reported on stderr, never in the JSON.
    code, out, progress = makoto(mesh, "tenants", "list", "--all", "--page-size", "2", token=admin)
    assert code == 0, out
    ids = [t["tenantId"] for t in out["tenants"]]
    assert {first, second} <= set(ids) and len(ids) == len(set(ids))
    pages = [line for line in progress.splitlines() if "page " in line]
    # ceil(n / 2) pages (a listing that ends on a full page may end with an empty one).
    assert len(pages) in (-(-len(ids) // 2), len(ids) // 2 + 1), progress
    assert pages[-1].endswith(f"{len(ids)} tenants"), progress
    code, out, _ = makoto(mesh, "tenants", "list", "--page-size", "1", token=admin)
    assert code == 0 and len(out["tenants"]) == 1 and out["nextPageToken"]

    code, out, progress = makoto(mesh, "tenants", "delete", second, "--yes", token=admin)
    assert code == 0 and out["state"] == "TENANT_STATE_DELETED", out
    assert f"deleting {second}" in progress
    code, out, _ = makoto(mesh, "tenants", "get", second, token=admin)
    assert code == 1 and out["code"] == 5, out  # NOT_FOUND

    # A tenant's own token cannot administer tenants.
    code, out, _ = makoto(
        mesh, "tenants", "create", new_tenant_id("cli-ops"), token=token(mesh, Role.TENANT_ADMIN, first)
    )
    assert code == 1 and out["code"] == 7, out  # PERMISSION_DENIED


def test_tenant_reads_usage_and_invoice(mesh: RunningMesh) -> None:
    tenant = new_tenant_id("cli-bill")
    admin = token(mesh, Role.PLATFORM_ADMIN)
    assert makoto(mesh, "tenants", "create", tenant, token=admin)[0] == 0
    own = token(mesh, Role.TENANT_ADMIN, tenant)
    with httpx.Client(base_url=mesh.base_url, timeout=30) as c:
        for i in range(3):
            r = c.put(
                f"{API}/tenants/{tenant}/objects/o{i}",
                content=b"abc",
                headers={"authorization": f"Bearer {own}"},
            )
            assert r.status_code == 200, r.text

    # Usage travels through the services' spools: wait until all three writes are in.
    deadline = time.monotonic() + 30
    while True:
        code, out, _ = makoto(
            mesh, "usage", tenant, "--meter", "api_calls", "--group-by", "method", token=own
        )
        assert code == 0, out
        by_method = {row["group"]["method"]: int(row["value"]) for row in out["rows"]}
        if by_method.get("PutObjectContent") == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert out["meter"] == "api_calls" and by_method["PutObjectContent"] == 3, out

    code, out, _ = makoto(mesh, "invoice", tenant, token=own)
    assert code == 0, out
    assert out["tenantId"] == tenant and out["month"] == this_month()
    lines = {line["meter"]: line for line in out["lineItems"]}
    assert int(lines["api_calls"]["quantity"]) >= 3
    code, out, _ = makoto(mesh, "invoice", tenant, "2026-13", token=own)
    assert code == 1 and out["code"] == 3, out  # INVALID_ARGUMENT
    # Another tenant's usage is not this token's to read.
    code, out, _ = makoto(mesh, "usage", new_tenant_id("cli-other"), "--meter", "api_calls", token=own)
    assert code == 1 and out["code"] == 7, out
