"""Through Envoy (REST and gRPC), on the session mesh: one tenant's PostgreSQL is broken by a
TCP fault proxy, that tenant gets 504 / DEADLINE_EXCEEDED at its deadline and then 503 /
UNAVAILABLE (BACKEND_CIRCUIT_OPEN) at once; the other tenant, on the same PostgreSQL server
without the proxy, keeps answering fast; healed, the first tenant works again.

The REST calls carry a `grpc-timeout` header (Envoy honours it up to the route timeout and
passes it on); without one the storage service's default deadline applies (30 s: too long to
wait for here; tests/unit/common/test_deadline.py covers the default).
The mesh runs with the default breaker settings (5 failures, 10 s cool-down).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

from services.common.identity import Role
from tests.contract.item_emulators import PG_ADMIN_DSN, unique_tenant
from tests.e2e.conftest import RunningMesh
from tests.e2e.multi_cloud_support import postgres_database
from tests.fault_proxy import FaultProxy, Mode, fault_proxy

pytestmark = pytest.mark.e2e

API = "/api/v1"
DEADLINE = 1.0
SLACK = 0.75  # scheduling slack on a shared box
HEALTHY_BOUND = 1.0  # generous: "stays fast", not a benchmark


@dataclass
class Faulty:
    mesh: RunningMesh
    proxy: FaultProxy
    sick: str
    well: str

    def url(self, tenant: str) -> str:
        return f"{self.mesh.base_url}{API}/tenants/{tenant}/collections/c/partitions/p/items/s"

    async def rest_get(self, http: httpx.AsyncClient, tenant: str) -> tuple[int, float, Any]:
        headers = {**self.mesh.headers(Role.MEMBER, tenant), "grpc-timeout": f"{int(DEADLINE * 1000)}m"}
        started = time.monotonic()
        r = await http.get(self.url(tenant), headers=headers)
        took = time.monotonic() - started
        try:
            body = r.json()
        except ValueError:
            body = r.text
        return r.status_code, took, body


def _reason(body: Any) -> str:
    for detail in body.get("details", []) if isinstance(body, dict) else []:
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return str(detail.get("reason", ""))
    return ""


@pytest_asyncio.fixture(loop_scope="session")
async def faulty(mesh: RunningMesh) -> AsyncIterator[Faulty]:
    sick, well = unique_tenant("esick"), unique_tenant("ewell")
    admin = mesh.headers(Role.PLATFORM_ADMIN)
    pg_port = int(PG_ADMIN_DSN.rsplit(":", 1)[1].split("/", 1)[0])
    async with postgres_database() as dsn, fault_proxy("127.0.0.1", pg_port) as proxy:
        via_proxy = dsn.replace(f":{pg_port}/", f":{proxy.port}/")
        async with httpx.AsyncClient(timeout=30) as http:
            for tenant, endpoint in ((sick, via_proxy), (well, dsn)):
                body = {
                    "tenantId": tenant,
                    "displayName": f"fault drill {tenant}",
                    "cloudProvider": "CLOUD_PROVIDER_CUSTOM",
                    "bindings": {
                        "itemStore": {
                            "backend": "ITEM_BACKEND_POSTGRES",
                            "endpoint": endpoint,
                            "options": {"auto_provision": "true"},
                        }
                    },
                }
                r = await http.post(f"{mesh.base_url}{API}/admin/tenants", json=body, headers=admin)
                assert r.status_code == 200, r.text
            f = Faulty(mesh, proxy, sick, well)
            for tenant in (sick, well):
                r = await http.put(
                    f.url(tenant),
                    json={"attributes": {"v": {"stringValue": "x"}}},
                    headers=mesh.headers(Role.MEMBER, tenant),
                )
                assert r.status_code == 200, r.text
        yield f
        await proxy.set_mode(Mode.PASS)


async def test_broken_backend_of_one_tenant_through_envoy(faulty: Faulty) -> None:
    f = faulty
    await f.proxy.set_mode(Mode.BLACKHOLE)
    async with httpx.AsyncClient(timeout=30) as http:
        # REST: 504 at the deadline, until the breaker opens; the other tenant stays fast.
        failures: list[tuple[int, float, Any]] = []
        well: list[float] = []
        opened: tuple[int, float, Any] | None = None
        for _ in range(10):
            status, took, body = await f.rest_get(http, f.sick)
            if status == 503 and _reason(body) == "BACKEND_CIRCUIT_OPEN":
                opened = (status, took, body)
                break
            failures.append((status, took, body))
            code, took_well, _ = await f.rest_get(http, f.well)
            assert code == 200
            well.append(took_well)
        assert opened is not None, failures
        assert len(failures) >= 1
        for status, took, body in failures:
            assert status == 504, (status, body)
            assert body["code"] == grpc.StatusCode.DEADLINE_EXCEEDED.value[0], body
            assert took < DEADLINE + SLACK, failures
        assert max(well) < HEALTHY_BOUND, well
        # Open: fails fast with RetryInfo.
        _, took, body = opened
        assert took < DEADLINE / 2, took
        assert any(d.get("@type", "").endswith("google.rpc.RetryInfo") for d in body["details"]), body

        print(
            f"\ndrill REST via Envoy, black-holed PostgreSQL: sick {[round(t, 3) for _, t, _ in failures]} s"
            f" (504), breaker-open 503 in {took * 1000:.1f} ms, well tenant max {max(well) * 1000:.1f} ms"
        )

        # gRPC through Envoy sees the same.
        async with grpc.aio.insecure_channel(f.mesh.grpc_target) as channel:
            stub = storage_service_pb2_grpc.StorageServiceStub(channel)
            request = items_pb2.GetItemRequest(
                tenant_id=f.sick, collection="c", partition_key="p", sort_key="s"
            )
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetItem(request, metadata=f.mesh.metadata(Role.MEMBER, f.sick), timeout=DEADLINE)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < DEADLINE / 2
            ok = await stub.GetItem(
                items_pb2.GetItemRequest(tenant_id=f.well, collection="c", partition_key="p", sort_key="s"),
                metadata=f.mesh.metadata(Role.MEMBER, f.well),
                timeout=5,
            )
            assert ok.attributes["v"].string_value == "x"

        # Healed: after the cool-down the probe goes through and the tenant works again.
        await f.proxy.set_mode(Mode.PASS)
        give_up = time.monotonic() + f.mesh.settings.breaker_cooldown_seconds + 10
        while True:
            status, _, body = await f.rest_get(http, f.sick)
            if status == 200:
                break
            assert time.monotonic() < give_up, (status, body)
            await asyncio.sleep(0.5)
        assert body["attributes"]["v"] == {"stringValue": "x"}
