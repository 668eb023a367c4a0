"""`makoto limits` and `makoto plans` against the running mesh, as an operator and a tenant would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.identity import Role
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import create_tenant

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def makoto(mesh: RunningMesh, *args: str, token: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", *args, "--url", mesh.base_url, "--token", token],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, json.loads(done.stdout)


def token(mesh: RunningMesh, role: Role, tenant: str | None = None) -> str:
    return mesh.headers(role, tenant)["authorization"].removeprefix("Bearer ")


def test_operator_sets_and_tenant_reads_limits(mesh: RunningMesh, tmp_path: Path) -> None:
    tenant = create_tenant(mesh, "cli-lim")
    admin = token(mesh, Role.PLATFORM_ADMIN)
    code, out = makoto(
        mesh,
        "limits",
        "set",
        tenant,
        "--writes-rps",
        "3",
        "--writes-burst",
        "6",
        "--monthly-tokens",
        "5000",
        token=admin,
    )
    assert code == 0, out
    assert out["overrides"]["writes"] == {"requestsPerSecond": 3, "burst": 6}
    code, out = makoto(mesh, "limits", "get", tenant, token=token(mesh, Role.MEMBER, tenant))
    assert code == 0 and out["effective"]["llmMonthlyTokens"] == "5000"
    assert out["llmBudget"]["tokensRemaining"] == "5000"
    # A tenant cannot set limits: the API's error, exit 1.
    code, out = makoto(
        mesh, "limits", "set", tenant, "--quota-bytes", "1", token=token(mesh, Role.TENANT_ADMIN, tenant)
    )
    assert code == 1 and (out.get("code") == 7 or out.get("httpStatus") == 403), out
    code, out = makoto(mesh, "limits", "set", tenant, "--clear", token=admin)
    assert code == 0 and "writes" not in out.get("overrides", {})

    # Plans: read the default, write a new plan with limits, read it back.
    code, plan = makoto(mesh, "plans", "get", "default", token=admin)
    assert code == 0 and plan["planId"] == "default"
    plan.update(planId="cli-gold", limits={"storageQuotaBytes": "1073741824"})
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    code, out = makoto(mesh, "plans", "set", str(path), token=admin)
    assert code == 0 and out["limits"] == {"storageQuotaBytes": "1073741824"}
    code, out = makoto(mesh, "plans", "get", "cli-gold", token=admin)
    assert out["prices"] == plan["prices"]
