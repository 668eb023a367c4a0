"""Fuzzing from docs/openapi.json (schemathesis) against a mesh of its own, through Envoy, with
valid tokens: every operation gets a bounded number of generated requests, with the path's tenant
set to one of two tenants whose admin token is sent (admin operations: a platform-admin token and
a third, throwaway tenant). What must hold over the whole run:

- 0 answers with a 5xx status (a bug, or a crash behind Envoy);
- 0 hangs (every request answered within REQUEST_TIMEOUT_S);
- every answer conforms to the document (status, content type, response schema).

The run is bounded: EXAMPLES_PER_OPERATION generated cases per operation, Hypothesis'
generate phase only (no shrinking: a failing case is reported as is, with its curl command).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from services.apidoc.openapi import OPENAPI_PATH
from services.common.identity import Role
from tests.mesh_fixture import RunningMesh, start_mesh, stop_mesh

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 25
REQUEST_TIMEOUT_S = 10.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    # Its own mesh: fuzzed admin calls (price plans, new tenants) must not change what other
    # tests see in the session's mesh.
    mesh = start_mesh(tmp_path_factory.mktemp("fuzz"))
    yield mesh
    stop_mesh(mesh)


def _create_tenant(mesh: RunningMesh, prefix: str) -> str:
    tenant = f"{prefix}-{uuid.uuid4().hex[:8]}"
    r = httpx.post(
        f"{mesh.base_url}/api/v1/admin/tenants",
        json={"tenantId": tenant},
        headers=mesh.headers(Role.PLATFORM_ADMIN),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return tenant


def fuzz_operation(operation: Any, run_case: Any) -> None:
    access = str(operation.definition.raw.get("x-makoto-access", "tenant"))

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        phases=[Phase.explicit, Phase.generate],
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        run_case(case, access)

    fuzz()


def test_fuzzing_every_operation_finds_no_5xx_no_hang_and_no_nonconforming_answer(
    fuzz_mesh: RunningMesh,
) -> None:
    schema = schemathesis.openapi.from_path(str(OPENAPI_PATH))
    tenants = [_create_tenant(fuzz_mesh, "fuzz-a"), _create_tenant(fuzz_mesh, "fuzz-b")]
    playground = _create_tenant(fuzz_mesh, "fuzz-admin")
    tenant_headers = {t: fuzz_mesh.headers(Role.TENANT_ADMIN, t) for t in tenants}
    admin_headers = fuzz_mesh.headers(Role.PLATFORM_ADMIN)
    session = requests.Session()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    slowest = 0.0
    turn = 0

    def run_case(case: Any, access: str) -> None:
        nonlocal slowest, turn
        turn += 1
        if access == "admin":
            tenant, headers = playground, admin_headers
        else:
            tenant = tenants[turn % 2]
            headers = tenant_headers[tenant]
        if case.path_parameters and "tenant_id" in case.path_parameters:
            case.path_parameters["tenant_id"] = tenant
        started = time.monotonic()
        try:
            response = case.call(
                base_url=fuzz_mesh.base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT_S
            )
        except requests.Timeout:
            failures.append(f"HANG {case.operation.label}: {case.as_curl_command()}")
            return
        slowest = max(slowest, time.monotonic() - started)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:  # every failed check of this answer
            failures.append(
                f"{case.operation.label} -> {response.status_code}: {exc}\n  {case.as_curl_command()}"
            )

    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        fuzz_operation(operation, run_case)
    elapsed = time.monotonic() - started
    total = sum(statuses.values())
    summary = (
        f"{len(operations)} operations, {total} requests in {elapsed:.1f} s, "
        f"slowest {slowest * 1000:.0f} ms, statuses {dict(sorted(statuses.items()))}"
    )
    print(summary)
    Path(fuzz_mesh.home / "fuzz-summary.txt").write_text(summary + "\n")
    assert not failures, f"{len(failures)} failures ({summary}):\n" + "\n".join(failures[:20])
    assert not [s for s in statuses if s >= 500], summary
    # The run reached the services, not only Envoy's refusals.
    assert statuses[200] >= len(operations), summary


def test_the_checks_catch_an_answer_that_does_not_conform(fuzz_mesh: RunningMesh) -> None:
    """The same checks fail when the document and the answer disagree (here: a document that
    claims ListModels answers carry a required field the service never sends)."""
    doc = json.loads(OPENAPI_PATH.read_text())
    doc["components"]["schemas"]["makoto.llm.v1.ListModelsResponse"]["required"] = ["noSuchField"]
    schema = schemathesis.openapi.from_dict(doc)
    operation = schema.find_operation_by_label("GET /api/v1/tenants/{tenant_id}/models")
    tenant = _create_tenant(fuzz_mesh, "fuzz-check")
    case = operation.Case(path_parameters={"tenant_id": tenant})
    response = case.call(
        base_url=fuzz_mesh.base_url,
        headers=fuzz_mesh.headers(Role.TENANT_ADMIN, tenant),
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 200
    with pytest.raises(FailureGroup) as failed:
        case.validate_response(response, checks=CHECKS)
    causes = failed.value.exceptions
    assert any("noSuchField" in str(c) for c in causes), causes
