"""TenantDirectory with the real push path: an in-process TenantService publishing to a NATS
server this test starts (so it can stop it), and the directory a data-plane service uses.

- a change made through TenantService replaces the directory's cached answer without waiting
  for the TTL;
- an unreadable event still expires the tenant's entry (then refetched);
- NATS lost mid-run: the directory falls back to the short polling TTL; NATS back: push TTL again
  and everything cached is re-checked (events sent meanwhile were lost).
"""

from __future__ import annotations

import asyncio
import functools
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import nats
import pytest
from google.protobuf import field_mask_pb2
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.config import MeshSettings
from services.common.directory_client import TenantDirectory
from services.common.identity import Role
from services.common.tenant_events import changed_subject
from services.tenant.server import build as build_tenant
from tests.e2e.control_plane import private_prefix
from tests.support import bearer, direct_channel, free_port, make_settings, running_server


class NatsServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"nats://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("nats-server")
        assert binary, "nats-server is needed on PATH (it runs on these machines for JetStream)"
        self.proc = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, what
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
async def setup(
    tmp_path: Path, nats_server: NatsServer
) -> AsyncIterator[tuple[MeshSettings, TenantDirectory]]:
    settings = make_settings(
        tmp_path / "home",
        nats_url=nats_server.url,
        nats_subject_prefix=private_prefix(),
        directory_cache_ttl_seconds=0.5,
        directory_push_ttl_seconds=60.0,
    )
    async with running_server(functools.partial(build_tenant, recorder_factory=None), settings):
        directory = TenantDirectory.from_settings(settings, "storage")
        try:
            assert directory.push is not None
            await asyncio.wait_for(directory.push.up.wait(), 10)
            yield settings, directory
        finally:
            await directory.close()


async def admin_call(settings: MeshSettings, method: str, request: object) -> None:
    async with direct_channel(settings.address("tenant")) as ch:
        stub = tenant_pb2_grpc.TenantServiceStub(ch)
        await getattr(stub, method)(request, metadata=bearer(settings, Role.PLATFORM_ADMIN))


async def test_pushed_change_replaces_the_cached_answer(setup: tuple[MeshSettings, TenantDirectory]) -> None:
    settings, directory = setup
    await admin_call(
        settings, "CreateTenant", tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id="pushy"))
    )
    assert (await directory.require_active("pushy")).state == tenant_pb2.TENANT_STATE_ACTIVE
    await admin_call(
        settings, "SuspendTenant", tenant_pb2.SuspendTenantRequest(tenant_id="pushy", reason="r")
    )
    entries = directory.cache._entries  # the cache itself: no lookup may refresh it for us

    def suspended() -> bool:
        entry = entries.get("pushy")
        return (
            entry is not None
            and entry.answer is not None
            and entry.answer.state == tenant_pb2.TENANT_STATE_SUSPENDED
        )

    took = await eventually(suspended, "suspension never pushed", timeout=2.0)
    assert took < 1.0


async def test_unreadable_event_expires_the_entry(setup: tuple[MeshSettings, TenantDirectory]) -> None:
    settings, directory = setup
    await admin_call(
        settings,
        "CreateTenant",
        tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id="garbled")),
    )
    first = await directory.resolve("garbled")
    entry = directory.cache._entries["garbled"]
    confirmed = entry.confirmed
    nc = await nats.connect(settings.nats_url)
    try:
        await nc.publish(changed_subject(settings.nats_subject_prefix, "garbled"), b"\xff\x00not-protobuf")
        await nc.flush()
    finally:
        await nc.close()
    # Expired and refetched from TenantService (a newer confirmation of the same answer).
    await eventually(lambda: directory.cache._entries["garbled"].confirmed > confirmed, "never refetched")
    assert (await directory.resolve("garbled")).etag == first.etag


async def test_nats_lost_mid_run_falls_back_to_polling_and_recovers(
    setup: tuple[MeshSettings, TenantDirectory], nats_server: NatsServer
) -> None:
    settings, directory = setup
    assert directory.push is not None
    await admin_call(
        settings, "CreateTenant", tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id="lost"))
    )
    await directory.resolve("lost")
    assert directory.cache.ttl == 60.0  # push is up: long freshness

    nats_server.stop()
    await eventually(lambda: not directory.push.up.is_set(), "disconnect not noticed")  # type: ignore[union-attr]
    assert directory.cache.ttl == 0.5
    # A change made while push is down bites by polling.
    await admin_call(settings, "SuspendTenant", tenant_pb2.SuspendTenantRequest(tenant_id="lost", reason="r"))
    started = time.monotonic()
    while (await directory.resolve("lost")).state != tenant_pb2.TENANT_STATE_SUSPENDED:
        assert time.monotonic() - started < 2.0, "suspension not seen by polling"
        await asyncio.sleep(0.05)

    held = directory.cache._entries["lost"].confirmed
    nats_server.start()
    await eventually(lambda: directory.push.up.is_set(), "never reconnected", timeout=15)  # type: ignore[union-attr]
    assert directory.cache.ttl == 60.0
    # Events may have been missed while away: what was cached is re-checked on next use, unless
    # a newer answer already arrived (TenantService's own link flushes the suspension it could
    # not send while NATS was down).
    entry = directory.cache._entries["lost"]
    assert entry.expires <= time.monotonic() or entry.confirmed > held


async def test_plan_and_binding_changes_are_pushed(setup: tuple[MeshSettings, TenantDirectory]) -> None:
    settings, directory = setup
    await admin_call(
        settings,
        "CreateTenant",
        tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id="planned")),
    )
    before = await directory.resolve("planned")
    await admin_call(
        settings,
        "UpdateTenant",
        tenant_pb2.UpdateTenantRequest(
            tenant=tenant_pb2.Tenant(
                tenant_id="planned",
                price_plan_id="gold",
                bindings=tenant_pb2.TenantBindings(
                    llm=tenant_pb2.LlmBinding(
                        provider=tenant_pb2.LLM_PROVIDER_OPENAI, chat_model="other-model"
                    )
                ),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["price_plan_id", "bindings.llm"]),
        ),
    )
    entries = directory.cache._entries

    def changed() -> bool:
        entry = entries.get("planned")
        return entry is not None and entry.answer is not None and entry.answer.etag != before.etag

    assert await eventually(changed, "update never pushed", timeout=2.0) < 1.0
    now = await directory.resolve("planned")
    assert now.price_plan_id == "gold" and now.bindings.llm.chat_model == "other-model"
