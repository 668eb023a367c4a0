"""GET /healthz: no token needed, 200 only while all four services pass Envoy's gRPC health
checks, 503 within seconds after one stops; the admin interface is local only."""

from __future__ import annotations

import stat

import httpx
import pytest

from services.mesh.envoy_admin import admin_get
from tests.e2e.envoy_spy import SpyMesh

pytestmark = pytest.mark.e2e


async def test_healthz_needs_no_token_and_ignores_a_bad_one(envoy_spy: SpyMesh) -> None:
    async with httpx.AsyncClient(base_url=envoy_spy.base_url) as c:
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/healthz", headers={"authorization": "Bearer nonsense"})).status_code == 200
        # Only GET /healthz is the health endpoint; anything else still needs a token.
        assert (await c.post("/healthz")).status_code == 401
        assert (await c.get("/healthzz")).status_code == 401


@pytest.mark.parametrize("service", ["metering", "storage"])
async def test_healthz_turns_503_when_a_service_stops_and_200_when_it_is_back(
    envoy_spy: SpyMesh, service: str
) -> None:
    assert await envoy_spy.healthz() == 200
    await envoy_spy.stop_service(service)
    try:
        took = await envoy_spy.wait_healthz(503, timeout=10)
        assert took < 5.0, f"/healthz took {took:.1f}s to notice"
    finally:
        await envoy_spy.start_service(service)
    await envoy_spy.wait_healthz(200, timeout=10)


async def test_admin_is_a_private_unix_socket_only(envoy_spy: SpyMesh) -> None:
    """The admin (debug logging, /quitquitquit, /runtime_modify) answers on a 0600 Unix socket
    in a 0700 directory, and on no TCP port at all."""
    path = envoy_spy.settings.admin_socket_path
    info = path.stat()
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert (await admin_get(envoy_spy.settings, "/ready")).status_code == 200
    dump = (await admin_get(envoy_spy.settings, "/config_dump")).json()
    [bootstrap] = [c for c in dump["configs"] if c["@type"].endswith("BootstrapConfigDump")]
    address = bootstrap["bootstrap"]["admin"]["address"]
    assert address == {"pipe": {"path": str(path), "mode": 0o600}}


async def test_readiness_per_service_is_separate_from_the_aggregate(envoy_spy: SpyMesh) -> None:
    async with httpx.AsyncClient(base_url=envoy_spy.base_url, timeout=5) as c:
        for name in ("tenant", "storage", "llm", "metering"):
            assert (await c.get(f"/healthz/{name}")).status_code == 200
        await envoy_spy.stop_service("llm")
        try:
            await envoy_spy.wait_healthz(503, timeout=10)
            assert (await c.get("/healthz/llm")).status_code == 503
            # The other services stay ready: a probe per service sees only its own.
            assert (await c.get("/healthz/storage")).status_code == 200
            assert (await c.get("/healthz/tenant")).status_code == 200
        finally:
            await envoy_spy.start_service("llm")
        await envoy_spy.wait_healthz(200, timeout=10)
        assert (await c.get("/healthz/llm")).status_code == 200
