"""Storage billed from the truth (issue 8, item 4), on real processes.

TenantService and MeteringService run in this process; StorageService is a real `python -m
services.storage` child with its SQLite spool, reconciling every second (orphan age 2 s).
Eight writers hammer four keys (racing overwrites), a slow streaming upload is in flight, and
StorageService is killed with SIGKILL mid-write. After it restarts, metered storage_bytes
equals the bytes the local store lists, exactly; the dead upload's temp file and an unindexed
blob are swept, and the correction is recorded with reason=reconciliation."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.api import httpbody_pb2
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.storage.v1 import objects_pb2, storage_service_pb2_grpc
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.config import MeshSettings
from services.common.identity import Role
from services.mesh.processes import settings_env
from services.metering.plans import FixedPlanResolver
from services.metering.server import build as build_metering
from services.tenant.server import build as build_tenant
from tests.support import bearer, direct_channel, make_settings, running_server

REPO_ROOT = Path(__file__).resolve().parents[3]
KEYS = [f"shared/k{i}" for i in range(4)]
WRITERS = 8


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[MeshSettings]:
    settings = make_settings(
        tmp_path / "home", storage_reconcile_interval_seconds=1.0, storage_orphan_age_seconds=2.0
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MAKOTO_METERING_DB_URL", raising=False)
        async with running_server(functools.partial(build_tenant, recorder_factory=None), settings):
            async with running_server(functools.partial(build_metering, plans=FixedPlanResolver()), settings):
                yield settings


class Storage:
    """The StorageService child: started, killed, restarted; always stopped at the end."""

    def __init__(self, settings: MeshSettings, log: Path) -> None:
        self._settings = settings
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAKOTO_")}
        env.update(settings_env(self._settings))
        with open(self._log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.storage"],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )

    async def ready(self) -> None:
        deadline = time.monotonic() + 60  # generous: a busy machine starts Python slowly
        while True:
            assert self.proc is not None and self.proc.poll() is None, self._log.read_text()[-2000:]
            try:
                _, writer = await asyncio.open_connection(self._settings.host, self._settings.storage_port)
                writer.close()
                return
            except OSError:
                assert time.monotonic() < deadline, "StorageService did not come up"
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def storage(control: MeshSettings, tmp_path: Path) -> Iterator[Storage]:
    child = Storage(control, tmp_path / "storage.log")
    try:
        yield child
    finally:
        child.stop()


async def _writer(
    stub: storage_service_pb2_grpc.StorageServiceStub, md: object, tenant: str, stop: asyncio.Event
) -> int:
    """Overwrite the shared keys with random sizes until stopped or StorageService dies."""
    rng = random.Random()
    done = 0
    while not stop.is_set():
        body = os.urandom(rng.randint(1, 48 * 1024))
        try:
            await stub.PutObjectContent(
                objects_pb2.PutObjectContentRequest(
                    tenant_id=tenant,
                    key=rng.choice(KEYS),
                    content=httpbody_pb2.HttpBody(content_type="application/octet-stream", data=body),
                ),
                metadata=md,
                timeout=10,
            )
            done += 1
        except grpc.aio.AioRpcError:
            return done  # killed under us
    return done


async def _slow_upload(
    stub: storage_service_pb2_grpc.StorageServiceStub, md: object, tenant: str, started: asyncio.Event
) -> None:
    """A streaming upload that is still sending when StorageService is killed."""

    async def parts() -> AsyncIterator[objects_pb2.UploadObjectRequest]:
        yield objects_pb2.UploadObjectRequest(
            header=objects_pb2.UploadObjectHeader(tenant_id=tenant, key="big/upload")
        )
        for _ in range(400):
            yield objects_pb2.UploadObjectRequest(chunk=os.urandom(64 * 1024))
            started.set()
            await asyncio.sleep(0.05)

    with contextlib.suppress(grpc.aio.AioRpcError):
        await stub.UploadObject(parts(), metadata=md, timeout=60)


def _bytes_on_disk(objects_dir: Path) -> tuple[int, list[Path]]:
    blobs = [p for p in (objects_dir / "blobs").rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in blobs), list((objects_dir / "tmp").iterdir())


async def test_kill_9_mid_write_then_reconciliation_bills_exactly_what_is_stored(
    control: MeshSettings, storage: Storage
) -> None:
    settings = control
    tenant = f"rc-{uuid.uuid4().hex[:8]}"
    admin = bearer(settings, Role.PLATFORM_ADMIN)
    service = bearer(settings, Role.SERVICE)
    member = bearer(settings, Role.MEMBER, tenant)
    objects_dir = settings.data_dir / "tenants" / tenant / "objects"
    storage.start()
    await storage.ready()
    async with (
        direct_channel(settings.address("tenant")) as tch,
        direct_channel(settings.address("metering")) as mch,
    ):
        tenants = tenant_pb2_grpc.TenantServiceStub(tch)
        metering = metering_pb2_grpc.MeteringServiceStub(mch)
        await tenants.CreateTenant(
            tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id=tenant)), metadata=admin
        )

        # 1. Racing writers on four keys and a slow upload; kill -9 in the middle of it all.
        async with direct_channel(settings.address("storage")) as sch:
            stub = storage_service_pb2_grpc.StorageServiceStub(sch)
            stop, started = asyncio.Event(), asyncio.Event()
            writers = [asyncio.create_task(_writer(stub, member, tenant, stop)) for _ in range(WRITERS)]
            upload = asyncio.create_task(_slow_upload(stub, member, tenant, started))
            await asyncio.wait_for(started.wait(), 30)
            await asyncio.sleep(2.0)
            storage.kill()
            stop.set()
            written = sum(await asyncio.gather(*writers))
            await upload
        assert written >= WRITERS, f"only {written} writes before the kill: no race exercised"
        assert list((objects_dir / "tmp").iterdir()), "the killed upload left no temp file"

        # 2. Drift the meter on purpose too (a delta counted twice), and plant a blob renamed
        #    into place whose index commit never happened, old enough to be an orphan.
        await metering.RecordUsage(
            metering_pb2.RecordUsageRequest(
                events=[
                    metering_pb2.UsageEvent(
                        id=str(uuid.uuid4()),
                        source="test",
                        type="storage_bytes",
                        subject=tenant,
                        value=12_345,
                        time=_now_ts(),
                    )
                ]
            ),
            metadata=service,
        )
        orphan = objects_dir / "blobs" / "ee" / ("ee" + uuid.uuid4().hex[2:])
        orphan.parent.mkdir(exist_ok=True)
        orphan.write_bytes(b"x" * 4096)
        old = time.time() - 3600
        os.utime(orphan, (old, old))

        # 3. StorageService comes back (its spool drains) and one write tells it the tenant.
        storage.start()
        await storage.ready()
        async with direct_channel(settings.address("storage")) as sch:
            stub = storage_service_pb2_grpc.StorageServiceStub(sch)
            await stub.PutObjectContent(
                objects_pb2.PutObjectContentRequest(
                    tenant_id=tenant, key="after/restart", content=httpbody_pb2.HttpBody(data=b"z" * 100)
                ),
                metadata=member,
            )
            listed = await _listed_bytes(stub, member, tenant)

            # 4. Within a few reconciliation runs: metered == listed, exactly; orphans gone.
            deadline = time.monotonic() + 30
            while True:
                metered = await _metered(metering, admin, tenant)
                on_disk, tmp = _bytes_on_disk(objects_dir)
                if metered == listed and on_disk == listed and not tmp:
                    break
                assert time.monotonic() < deadline, (
                    f"metered {metered}, listed {listed}, blobs on disk {on_disk}, temp files {tmp}"
                )
                await asyncio.sleep(0.25)
            assert not orphan.exists()
            assert await _listed_bytes(stub, member, tenant) == listed  # nothing indexed was swept

        # The correction is on record, queryable by its reason.
        reasons = await metering.QueryUsage(
            metering_pb2.QueryUsageRequest(
                tenant_id=tenant,
                meter="storage_bytes",
                start_time=_ts(datetime(1970, 1, 1, tzinfo=UTC)),
                end_time=_ts(datetime.now(UTC) + timedelta(seconds=1)),
                group_by=["reason"],
            ),
            metadata=admin,
        )
        by_reason = {row.group["reason"]: row.value for row in reasons.rows}
        assert by_reason.get("reconciliation", 0) != 0, by_reason
        assert sum(by_reason.values()) == listed


def _ts(when: datetime) -> object:
    from google.protobuf import timestamp_pb2

    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


def _now_ts() -> object:
    return _ts(datetime.now(UTC))


async def _metered(metering: metering_pb2_grpc.MeteringServiceStub, md: object, tenant: str) -> int:
    reply = await metering.QueryUsage(
        metering_pb2.QueryUsageRequest(
            tenant_id=tenant,
            meter="storage_bytes",
            start_time=_ts(datetime(1970, 1, 1, tzinfo=UTC)),
            end_time=_ts(datetime.now(UTC) + timedelta(seconds=1)),
        ),
        metadata=md,
    )
    return sum(row.value for row in reply.rows)


async def _listed_bytes(stub: storage_service_pb2_grpc.StorageServiceStub, md: object, tenant: str) -> int:
    total, token = 0, ""
    while True:
        page = await stub.ListObjects(
            objects_pb2.ListObjectsRequest(tenant_id=tenant, page_size=1000, page_token=token), metadata=md
        )
        total += sum(o.size_bytes for o in page.objects)
        token = page.next_page_token
        if not token:
            return total
