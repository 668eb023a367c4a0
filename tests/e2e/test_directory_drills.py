"""Control-plane drills, each on its own processes (tests/e2e/control_plane.py), direct gRPC:

- kill -9 TenantService for 15 s while two tenants drive storage and LLM calls: no call fails.
- suspension, resumption and deletion reach storage, LLM and metering within one second of the
  admin call (NATS push); a deleted tenant's token then gets only 404/403, and those refused
  calls are not billed.
- NATS configured but unreachable: the services start, serve, and fall back to polling.

The numbers each drill measured are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from makoto.llm.v1 import llm_pb2
from makoto.storage.v1 import items_pb2
from makoto.tenant.v1 import tenant_pb2

from tests.e2e.control_plane import (
    NATS_URL,
    Clients,
    ControlPlane,
    closed_port_url,
    private_prefix,
    running,
)
from tests.support import make_settings

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 15.0
Call = Callable[[str, int], Awaitable[None]]


def push_settings(tmp_path: Path, **overrides: object) -> ControlPlane:
    values: dict[str, object] = {
        "nats_url": NATS_URL,
        "nats_subject_prefix": private_prefix(),
        # Short so that cached answers also expire during the 15 s outage: the drill then proves
        # serve-stale, not just a long TTL.
        "directory_push_ttl_seconds": 2.0,
    }
    values.update(overrides)
    return ControlPlane(make_settings(tmp_path / "home", **values))


async def test_kill_dash_nine_tenant_service_for_15s_fails_no_call(tmp_path: Path) -> None:
    plane = push_settings(tmp_path)
    async with running(plane) as c:
        tenants = ["drill-a", "drill-b"]
        for t in tenants:
            await c.create_tenant(t)
        kinds: dict[str, Call] = {"storage": c.storage_call, "llm": c.llm_call}
        phase = "before"
        ok: Counter[tuple[str, str, str]] = Counter()
        failures: list[tuple[str, str, str, str, str]] = []
        stop = asyncio.Event()

        async def drive(tenant: str, kind: str) -> None:
            n = 0
            while not stop.is_set():
                at = phase
                try:
                    await kinds[kind](tenant, n)
                    ok[(tenant, kind, at)] += 1
                except grpc.aio.AioRpcError as err:
                    failures.append((tenant, kind, at, err.code().name, err.details() or ""))
                n += 1
                await asyncio.sleep(0.02)

        drivers = [asyncio.create_task(drive(t, k)) for t in tenants for k in kinds]
        await asyncio.sleep(2.0)
        phase = "outage"
        plane.kill9("tenant")
        killed = time.monotonic()
        await asyncio.sleep(OUTAGE_SECONDS)
        phase = "restart"
        plane.start_service("tenant")
        await plane.wait_serving("tenant")
        restarted_after = time.monotonic() - killed
        phase = "after"
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.gather(*drivers)

        print(
            f"\n[drill kill-9] TenantService down {restarted_after:.1f}s; "
            f"calls ok by (tenant, service, phase): {dict(sorted(ok.items()))}; failures: {len(failures)}"
        )
        assert failures == [], failures[:5]
        for t in tenants:
            for k in kinds:
                for at in ("before", "outage", "after"):
                    assert ok[(t, k, at)] > 0, (t, k, at)
        assert "serving stale tenant directory answer" in plane.log_text("storage")

        # After the restart, the control plane works again and changes still reach the data plane.
        started = time.monotonic()
        await c.tenants.SuspendTenant(
            tenant_pb2.SuspendTenantRequest(tenant_id="drill-a", reason="after restart"), metadata=c.admin()
        )
        await until_refused(c.storage_call, "drill-a", grpc.StatusCode.PERMISSION_DENIED, started)


async def until_refused(call: Call, tenant: str, code: grpc.StatusCode, started: float) -> float:
    """Call until it is refused with `code`; seconds from `started` to that answer (<= 5 s)."""
    n = 0
    while True:
        try:
            await call(tenant, n)
        except grpc.aio.AioRpcError as err:
            if err.code() == code:
                return time.monotonic() - started
            raise
        n += 1
        assert time.monotonic() - started < 5.0, f"{call.__name__} for {tenant} never refused ({code.name})"
        await asyncio.sleep(0.01)


async def until_accepted(call: Call, tenant: str, started: float) -> float:
    n = 0
    while True:
        try:
            await call(tenant, n)
            return time.monotonic() - started
        except grpc.aio.AioRpcError:
            n += 1
            assert time.monotonic() - started < 5.0, f"{call.__name__} for {tenant} never accepted again"
            await asyncio.sleep(0.01)


async def test_lifecycle_changes_bite_within_one_second_everywhere(tmp_path: Path) -> None:
    # A long push TTL: only the push can make these changes bite within a second.
    plane = push_settings(tmp_path, directory_push_ttl_seconds=60.0, directory_cache_ttl_seconds=30.0)
    async with running(plane) as c:
        await c.create_tenant("life-a")
        await c.create_tenant("life-b")
        calls: dict[str, Call] = {
            "storage": c.storage_call,
            "llm": c.llm_call,
            "metering-usage": c.metering_call,
            "metering-invoice": c.invoice_call,
            "metering-limits": c.limits_call,
        }
        # A normal run: both tenants' calls succeed (and every service has them cached).
        for _ in range(3):
            for call in calls.values():
                await call("life-a", 0)
                await call("life-b", 0)

        async def measure(kind: str, code: grpc.StatusCode | None, started: float) -> float:
            if code is None:
                return await until_accepted(calls[kind], "life-a", started)
            return await until_refused(calls[kind], "life-a", code, started)

        async def everywhere(code: grpc.StatusCode | None, started: float) -> dict[str, float]:
            times = await asyncio.gather(*(measure(k, code, started) for k in calls))
            return dict(zip(calls, times, strict=True))

        started = time.monotonic()
        await c.tenants.SuspendTenant(
            tenant_pb2.SuspendTenantRequest(tenant_id="life-a", reason="drill"), metadata=c.admin()
        )
        admin_call = time.monotonic() - started
        suspended = await everywhere(grpc.StatusCode.PERMISSION_DENIED, started)

        started = time.monotonic()
        await c.tenants.ResumeTenant(tenant_pb2.ResumeTenantRequest(tenant_id="life-a"), metadata=c.admin())
        resumed = await everywhere(None, started)

        started = time.monotonic()
        await c.tenants.DeleteTenant(tenant_pb2.DeleteTenantRequest(tenant_id="life-a"), metadata=c.admin())
        deleted = await everywhere(grpc.StatusCode.NOT_FOUND, started)

        print(
            f"\n[drill lifecycle] SuspendTenant itself took {admin_call:.3f}s; "
            "seconds from the start of the admin call to the first refused/accepted answer: "
            f"suspend {fmt(suspended)}; resume {fmt(resumed)}; delete {fmt(deleted)}"
        )
        for name, seen in (("suspend", suspended), ("resume", resumed), ("delete", deleted)):
            for kind, seconds in seen.items():
                assert seconds < 1.0, (name, kind, seconds)

        # The deleted tenant's token gets nothing but 404/403, on every service.
        codes: Counter[str] = Counter()
        for n in range(5):
            for call in (*calls.values(), tenant_read(c)):
                try:
                    await call("life-a", n)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as err:
                    codes[err.code().name] += 1
        assert set(codes) <= {"NOT_FOUND", "PERMISSION_DENIED"}, codes

        # Refused calls are not billed: once a later sentinel through the same spooling services
        # has reached metering, nothing refused (403/404) is on the deleted tenant's record.
        await c.storage.GetItem(
            items_pb2.GetItemRequest(
                tenant_id="life-b", collection="drill", partition_key="p", sort_key="s0"
            ),
            metadata=c.member("life-b"),
        )
        await c.llm.CountTokens(
            llm_pb2.CountTokensRequest(
                tenant_id="life-b", messages=[llm_pb2.ChatMessage(role="user", content="x")]
            ),
            metadata=c.member("life-b"),
        )
        deadline = time.monotonic() + 20
        while True:
            methods = await c.usage_by("life-b", "method")
            if methods.get("GetItem") and methods.get("CountTokens"):
                break
            assert time.monotonic() < deadline, methods
            await asyncio.sleep(0.2)
        # DeleteTenant erased the tenant's usage (its invoices are kept) and usage arriving for an
        # erased tenant is dropped: nothing at all is on its record, the refused calls included.
        statuses = await c.usage_by("life-a", "status")
        assert statuses == {}, statuses


def tenant_read(c: Clients) -> Call:
    async def get_tenant(tenant: str, n: int) -> None:
        await c.tenants.GetTenant(tenant_pb2.GetTenantRequest(tenant_id=tenant), metadata=c.member(tenant))

    return get_tenant


def fmt(seen: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in seen.items())


async def test_unreachable_nats_falls_back_to_polling(tmp_path: Path) -> None:
    plane = ControlPlane(make_settings(tmp_path / "home", nats_url=closed_port_url()))
    async with running(plane) as c:  # every service starts and serves without NATS
        await c.create_tenant("poll-a")
        for n in range(3):
            await c.storage_call("poll-a", n)
            await c.llm_call("poll-a", n)
        started = time.monotonic()
        await c.tenants.SuspendTenant(
            tenant_pb2.SuspendTenantRequest(tenant_id="poll-a", reason="no push"), metadata=c.admin()
        )
        seconds = await until_refused(c.storage_call, "poll-a", grpc.StatusCode.PERMISSION_DENIED, started)
        ttl = plane.settings.directory_cache_ttl_seconds
        print(f"\n[drill no-nats] suspension bit after {seconds:.3f}s by polling (TTL {ttl}s)")
        # Bound: the poll TTL plus one directory round trip.
        assert seconds < ttl + 0.5
        assert "nats unreachable" in plane.log_text("storage")
        assert "tenant change not pushed" in plane.log_text("tenant")
