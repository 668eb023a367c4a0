"""The server as shipped: default wiring (SQLite under data_dir, the spooling usage recorder) and
`python -m services.tenant` as its own process (health, reflection of both services, SIGTERM)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from makoto.tenant.v1 import directory_pb2, directory_pb2_grpc, tenant_pb2, tenant_pb2_grpc

from services.common.config import MeshSettings
from services.common.identity import Role
from services.tenant.server import build
from tests.support import bearer, direct_channel, free_port, make_settings, running_server

ROOT = Path(__file__).resolve().parents[3]


async def test_default_build_uses_embedded_database_and_spools_usage(settings: MeshSettings) -> None:
    async with running_server(build, settings):
        async with direct_channel(settings.address("tenant")) as channel:
            stub = tenant_pb2_grpc.TenantServiceStub(channel)
            await stub.CreateTenant(
                tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id="wired")),
                metadata=bearer(settings, Role.PLATFORM_ADMIN),
            )
    assert (settings.data_dir / "tenant.sqlite3").is_file()
    # no MeteringService runs here: the api_calls event waits durably in the tenant spool
    spool = settings.data_dir / "spool" / "tenant.sqlite3"
    assert spool.is_file()
    db = sqlite3.connect(spool)
    try:
        payloads = [bytes(row[0]) for row in db.execute("SELECT payload FROM events")]
    finally:
        db.close()
    assert any(b"api_calls" in p and b"wired" in p for p in payloads)

    # a restart finds the tenant again (migrations on an existing database are a no-op)
    async with running_server(build, settings):
        async with direct_channel(settings.address("tenant")) as channel:
            got = await tenant_pb2_grpc.TenantServiceStub(channel).GetTenant(
                tenant_pb2.GetTenantRequest(tenant_id="wired"),
                metadata=bearer(settings, Role.MEMBER, "wired"),
            )
    assert got.state == tenant_pb2.TENANT_STATE_ACTIVE


async def test_module_runs_as_a_process_and_stops_on_sigterm(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    env = {
        **os.environ,
        "MAKOTO_HOME": str(settings.home),
        "MAKOTO_TLS_DIR": str(settings.tls_path),
        "MAKOTO_TENANT_PORT": str(settings.tenant_port),
        "MAKOTO_METERING_PORT": str(free_port()),
        "MAKOTO_LOG_LEVEL": "WARNING",
        "MAKOTO_SHUTDOWN_GRACE_SECONDS": "1",
        "MAKOTO_TENANT_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'from-env.sqlite3'}",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.tenant", cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with direct_channel(settings.address("tenant")) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(200):
                try:
                    answer = await health.Check(
                        health_pb2.HealthCheckRequest(service="makoto.tenant.v1.TenantDirectoryService"),
                        timeout=1,
                    )
                    break
                except grpc.aio.AioRpcError:
                    assert proc.returncode is None, "server exited early"
                    await asyncio.sleep(0.05)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            err: grpc.aio.AioRpcError | None = None
            try:
                await directory_pb2_grpc.TenantDirectoryServiceStub(channel).ResolveTenant(
                    directory_pb2.ResolveTenantRequest(tenant_id="absent"),
                    metadata=bearer(settings, Role.SERVICE),
                )
            except grpc.aio.AioRpcError as exc:
                err = exc
            assert err is not None and err.code() == grpc.StatusCode.NOT_FOUND
        # MAKOTO_TENANT_DB_URL chose the database
        assert (tmp_path / "from-env.sqlite3").is_file()
        assert not (settings.data_dir / "tenant.sqlite3").exists()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
