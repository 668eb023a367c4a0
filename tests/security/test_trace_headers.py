"""A client cannot choose the trace id services log under (issue 9, item 9): Envoy drops
traceparent, tracestate, b3 and the other trace headers before tracing and routing (HCM early
header mutation), and replaces a client's x-request-id with its own."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable

import grpc
import httpx
import pytest
from makoto.storage.v1 import items_pb2

from services.common.identity import Role
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import API, create_tenant, stubs

pytestmark = pytest.mark.e2e


async def _wait_for(path_text: Callable[[], str], needle: str, limit: float = 10.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if needle in path_text():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_client_trace_context_does_not_reach_service_logs(mesh: RunningMesh) -> None:
    tenant = create_tenant(mesh, "sec-trace")
    via_envoy = uuid.uuid4().hex
    direct = uuid.uuid4().hex
    request_id = f"client-chosen-{uuid.uuid4().hex}"
    log = mesh.settings.home / "logs" / "storage.log"
    access = mesh.settings.home / "logs" / "envoy-access.log"
    headers = {
        **mesh.headers(Role.MEMBER, tenant),
        "traceparent": f"00-{via_envoy}-{'1' * 16}-01",
        "tracestate": f"vendor={via_envoy}",
        "x-b3-traceid": via_envoy,
        "b3": f"{via_envoy}-{'1' * 16}-1",
        "x-request-id": request_id,
    }
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as http:
        # NOT_FOUND answers are logged (INFO) with the call's trace id.
        r = await http.get(
            f"{API}/tenants/{tenant}/collections/c/partitions/p/items/missing", headers=headers
        )
        assert r.status_code == 404, r.text
    # The same call on the service's own port (inside the mesh) does carry its caller's trace id:
    # proof that the log line would show a client's id had Envoy passed it on.
    md = (*mesh.metadata(Role.MEMBER, tenant), ("traceparent", f"00-{direct}-{'2' * 16}-01"))
    async with mesh.channel(mesh.address("storage")) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stubs(channel).storage.GetItem(
                items_pb2.GetItemRequest(
                    tenant_id=tenant, collection="c", partition_key="p", sort_key="gone"
                ),
                metadata=md,
            )
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert await _wait_for(log.read_text, direct)
    assert via_envoy not in log.read_text()
    # Envoy's own request id replaced the client's.
    assert await _wait_for(access.read_text, f"/tenants/{tenant}/collections/c/partitions/p/items/missing")
    lines = [json.loads(x) for x in access.read_text().splitlines() if tenant in x and "missing" in x]
    assert lines and all(line["request_id"] != request_id for line in lines), lines
