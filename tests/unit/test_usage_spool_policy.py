"""No service without a record: a real grpc.aio server with the real SpoolingUsageRecorder and no
MeteringService (so the spool only grows).

* The spool file is capped (usage_spool_max_bytes -> SQLite max_page_count): it fills like a
  full disk. Every call that answered OK has its api_calls event in the spool; once a write
  fails, calls answer UNAVAILABLE (USAGE_SPOOL_UNAVAILABLE) and health says NOT_SERVING; when
  MeteringService drains the spool, health and calls come back.
* The event cap (usage_spool_max_events): past it, calls are refused up front with
  USAGE_SPOOL_FULL + RetryInfo; the depth gauge and the "usage spool growing" alert follow.
* A full filesystem (a 1 MiB tmpfs) and a read-only spool (its files made immutable under the
  running server): the same answers, and recovery once space or writes come back.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from makoto.metering.v1 import metering_pb2
from makoto.storage.v1 import storage_service_pb2_grpc
from makoto.tenant.v1 import directory_pb2, directory_pb2_grpc
from prometheus_client import REGISTRY

from services.common.config import MeshSettings
from services.common.identity import Role
from services.common.metering_client import SpoolingUsageRecorder
from services.common.server import Registration, ServerSpec
from services.metering.plans import FixedPlanResolver
from services.metering.server import build as build_metering
from tests.support import bearer, direct_channel, make_settings, running_server
from tests.unit.common.test_interceptor import Servicer, get


class Directory(directory_pb2_grpc.TenantDirectoryServiceServicer):  # type: ignore[misc]
    """A stand-in TenantDirectory: an internal method services call with their token (metered
    for the platform, best effort)."""

    async def ResolveTenant(
        self, request: directory_pb2.ResolveTenantRequest, context: grpc.aio.ServicerContext
    ) -> directory_pb2.ResolveTenantResponse:
        return directory_pb2.ResolveTenantResponse(tenant_id=request.tenant_id)


@asynccontextmanager
async def storage_like(
    settings: MeshSettings,
) -> AsyncIterator[tuple[storage_service_pb2_grpc.StorageServiceStub, health_pb2_grpc.HealthStub]]:
    recorder = SpoolingUsageRecorder(settings, "storage", flush_interval=0.05)
    recorder.watch_interval_seconds = 0.1
    recorder.backoff_base_seconds = 0.02
    recorder.backoff_max_seconds = 0.1

    async def build(s: MeshSettings) -> ServerSpec:
        return ServerSpec(
            name="storage",
            port=s.storage_port,
            registrations=[
                Registration(
                    storage_service_pb2_grpc.add_StorageServiceServicer_to_server,
                    Servicer(),
                    "makoto.storage.v1.StorageService",
                ),
                Registration(
                    directory_pb2_grpc.add_TenantDirectoryServiceServicer_to_server,
                    Directory(),
                    "makoto.tenant.v1.TenantDirectoryService",
                ),
            ],
            recorder=recorder,
        )

    async with running_server(build, settings):
        async with direct_channel(settings.address("storage")) as channel:
            yield (
                storage_service_pb2_grpc.StorageServiceStub(channel),
                health_pb2_grpc.HealthStub(channel),
            )


def reason_of(err: grpc.aio.AioRpcError) -> tuple[str, float | None]:
    status = rpc_status.from_call(err)
    assert status is not None
    reason, retry = "", None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            ri = error_details_pb2.RetryInfo()
            detail.Unpack(ri)
            retry = ri.retry_delay.ToMilliseconds() / 1000
    return reason, retry


def spooled_events(path: Path, meter: str) -> list[metering_pb2.UsageEvent]:
    conn = sqlite3.connect(path)
    try:
        payloads = [bytes(p) for (p,) in conn.execute("SELECT payload FROM events")]
    finally:
        conn.close()
    return [e for e in map(metering_pb2.UsageEvent.FromString, payloads) if e.type == meter]


def spooled_statuses(path: Path) -> list[str]:
    """The api_calls events' statuses (the spool also carries each call's audit event)."""
    return [e.dimensions["status"] for e in spooled_events(path, "api_calls")]


async def health_of(health: health_pb2_grpc.HealthStub) -> int:
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""))
    return int(reply.status)


async def wait_health(health: health_pb2_grpc.HealthStub, status: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while await health_of(health) != status:
        assert time.monotonic() < deadline, f"health did not become {status}"
        await asyncio.sleep(0.05)


class LogSpy:
    """Stands in for the recorder's structlog logger: keeps (level, message, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def emit(msg: str, **fields: Any) -> None:
            self.lines.append((level, msg, fields))

        return emit

    def logged(self, level: str, msg: str) -> list[dict[str, Any]]:
        return [f for lv, m, f in self.lines if (lv, m) == (level, msg)]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> LogSpy:
    from services.common import metering_client

    logger = LogSpy()
    monkeypatch.setattr(metering_client, "log", logger)
    return logger


async def test_a_full_spool_refuses_calls_and_no_ok_goes_unrecorded(tmp_path: Path, spy: LogSpy) -> None:
    settings = make_settings(tmp_path / "home", usage_spool_max_bytes=128 * 1024)
    md = bearer(settings, Role.MEMBER, "acme")
    ok = 0
    async with storage_like(settings) as (stub, health):
        assert await health_of(health) == health_pb2.HealthCheckResponse.SERVING
        first_failure: grpc.aio.AioRpcError | None = None
        for _ in range(5000):
            try:
                await stub.GetItem(get(), metadata=md)
                ok += 1
            except grpc.aio.AioRpcError as err:
                first_failure = err
                break
        assert first_failure is not None, "the capped spool never filled"
        assert ok > 100  # the cap holds a few hundred events
        assert first_failure.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(first_failure) == ("USAGE_SPOOL_UNAVAILABLE", 5.0)
        await wait_health(health, health_pb2.HealthCheckResponse.NOT_SERVING)
        # While it cannot write, calls are refused (before any work) with the same reason.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetItem(get(), metadata=md)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(err.value)[0] == "USAGE_SPOOL_UNAVAILABLE"
        spool = settings.data_dir / "spool" / "storage.sqlite3"
        # Exactly the calls that answered OK are durable; the refused ones left nothing.
        assert spooled_statuses(spool) == ["OK"] * ok

        # MeteringService comes up: the spool drains, writes work again, health returns.
        async with running_server(partial(build_metering, plans=FixedPlanResolver()), settings):
            await wait_health(health, health_pb2.HealthCheckResponse.SERVING, timeout=20)
            await stub.GetItem(get(), metadata=md)
    assert len(spy.logged("error", "usage spool cannot write; refusing metered calls")) >= 1


async def test_the_event_cap_refuses_up_front_with_retry_info(tmp_path: Path, spy: LogSpy) -> None:
    settings = make_settings(tmp_path / "home", usage_spool_max_events=30, usage_spool_warn_events=10)
    md = bearer(settings, Role.MEMBER, "acme")
    async with storage_like(settings) as (stub, health):
        # Each call spools two events: its api_calls record and its audit record.
        for _ in range(15):
            await stub.GetItem(get(), metadata=md)
        depth = REGISTRY.get_sample_value("makoto_usage_spool_events", {"source": "storage"})
        assert depth == 30
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetItem(get(), metadata=md)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(err.value) == ("USAGE_SPOOL_FULL", 5.0)
        await wait_health(health, health_pb2.HealthCheckResponse.NOT_SERVING)
        age = REGISTRY.get_sample_value("makoto_usage_spool_oldest_age_seconds", {"source": "storage"})
        assert age is not None and age >= 0
        spool = settings.data_dir / "spool" / "storage.sqlite3"
        assert spooled_statuses(spool) == ["OK"] * 15
        # The refused call is audited too (the cap refuses calls up front, not audit records).
        outcomes = [e.dimensions["outcome"] for e in spooled_events(spool, "audit")]
        assert outcomes == ["OK"] * 15 + ["UNAVAILABLE"]
    growing = spy.logged("error", "usage spool growing")
    assert len(growing) == 1 and growing[0]["depth"] == 10


@pytest.fixture
def tiny_spool_fs(tmp_path: Path) -> Iterator[MeshSettings]:
    """Settings whose spool directory is a 1 MiB tmpfs (we run as root here and in CI), nearly
    filled by another file, as on a disk that runs full; unmounted afterwards."""
    settings = make_settings(tmp_path / "home")
    spool_dir = settings.data_dir / "spool"
    spool_dir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(spool_dir)], check=True)
    try:
        (spool_dir / "ballast").write_bytes(b"\0" * (1024 * 1024 - 160 * 1024))
        yield settings
    finally:
        # Lazy: detaches now even if a file on it is still open (see README: known limits).
        subprocess.run(["umount", "-l", str(spool_dir)], check=True)


async def test_a_full_filesystem_refuses_calls_and_no_ok_goes_unrecorded(tiny_spool_fs: MeshSettings) -> None:
    settings = tiny_spool_fs
    md = bearer(settings, Role.MEMBER, "acme")
    ok = 0
    async with storage_like(settings) as (stub, health):
        failure: grpc.aio.AioRpcError | None = None
        for _ in range(5000):
            try:
                await stub.GetItem(get(), metadata=md)
                ok += 1
            except grpc.aio.AioRpcError as err:
                failure = err
                break
        assert failure is not None, "the tiny filesystem never filled"
        assert failure.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(failure)[0] == "USAGE_SPOOL_UNAVAILABLE"
        await wait_health(health, health_pb2.HealthCheckResponse.NOT_SERVING)
        spool = settings.data_dir / "spool" / "storage.sqlite3"
        assert spooled_statuses(spool) == ["OK"] * ok
        # Space comes back (the operator frees the disk): the spool writes again, health returns.
        (settings.data_dir / "spool" / "ballast").unlink()
        await wait_health(health, health_pb2.HealthCheckResponse.SERVING)
        await stub.GetItem(get(), metadata=md)
        assert spooled_statuses(spool) == ["OK"] * (ok + 1)


@pytest.fixture
def read_only_spool(tmp_path: Path) -> Iterator[tuple[MeshSettings, Any]]:
    """Settings plus a switch that makes the spool's files read-only under the running server.
    We run as root (here and in CI), for whom file modes (chmod) change nothing, and a remount
    read-only is refused while SQLite holds the file open for writing ("mount point is busy").
    So the files are made immutable (`chattr +i`: no write, not even by root, also through the
    descriptors already open); the attribute is always cleared afterwards."""
    settings = make_settings(tmp_path / "home")
    spool_dir = settings.data_dir / "spool"

    def files() -> list[str]:
        # Not the -shm file: SQLite maps it, and a write fault on an immutable mapping kills the
        # process (SIGBUS), which is no file-level refusal.
        return [str(p) for p in sorted(spool_dir.glob("storage.sqlite3*")) if not p.name.endswith("-shm")]

    def read_only(on: bool) -> None:
        targets = files()
        assert targets, "no spool file yet"
        done = subprocess.run(["chattr", "+i" if on else "-i", *targets], capture_output=True, text=True)
        assert done.returncode == 0, f"chattr cannot mark the spool read-only here: {done.stderr}"

    try:
        yield settings, read_only
    finally:
        if spool_dir.exists() and files():
            subprocess.run(["chattr", "-i", *files()], check=False)


async def test_a_read_only_spool_refuses_calls_and_no_ok_goes_unrecorded(
    read_only_spool: tuple[MeshSettings, Any], spy: LogSpy
) -> None:
    settings, read_only = read_only_spool
    md = bearer(settings, Role.MEMBER, "acme")
    spool = settings.data_dir / "spool" / "storage.sqlite3"
    service = bearer(settings, Role.SERVICE)
    async with (
        storage_like(settings) as (stub, health),
        direct_channel(settings.address("storage")) as channel,
    ):
        directory = directory_pb2_grpc.TenantDirectoryServiceStub(channel)
        for _ in range(5):
            await stub.GetItem(get(), metadata=md)
        read_only(True)
        # The call that does its work but cannot record it answers UNAVAILABLE, not OK.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetItem(get(), metadata=md)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason_of(err.value) == ("USAGE_SPOOL_UNAVAILABLE", 5.0)
        await wait_health(health, health_pb2.HealthCheckResponse.NOT_SERVING)
        # While it stays read-only, calls are refused before any work, and health stays down
        # (the watcher's probe keeps failing).
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetItem(get(), metadata=md)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert reason_of(err.value)[0] == "USAGE_SPOOL_UNAVAILABLE"
        await asyncio.sleep(0.3)  # a few probe rounds
        assert await health_of(health) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert REGISTRY.get_sample_value("makoto_usage_spool_writable", {"source": "storage"}) == 0
        # A service's call (the platform pays for it, never the tenant) is not refused: its
        # record is best effort, skipped while the spool cannot write.
        resolved = await directory.ResolveTenant(
            directory_pb2.ResolveTenantRequest(tenant_id="acme"), metadata=service
        )
        assert resolved.tenant_id == "acme"
        # Writable again (the operator fixes the volume): the probe succeeds, health returns.
        read_only(False)
        # Exactly the 5 calls that answered OK are durable; the refused ones left nothing.
        assert spooled_statuses(spool) == ["OK"] * 5
        await wait_health(health, health_pb2.HealthCheckResponse.SERVING)
        await stub.GetItem(get(), metadata=md)
        assert spooled_statuses(spool) == ["OK"] * 6
        # Writable: the service's call is recorded again, for the platform.
        await directory.ResolveTenant(directory_pb2.ResolveTenantRequest(tenant_id="acme"), metadata=service)
        [platform] = [
            e for e in spooled_events(spool, "api_calls") if e.dimensions["method"] == "ResolveTenant"
        ]
        assert (platform.subject, platform.dimensions["payer"], platform.dimensions["status"]) == (
            "acme",
            "platform",
            "OK",
        )
    assert len(spy.logged("error", "usage spool cannot write; refusing metered calls")) >= 1
