"""kill -9 of a real TenantService process in the middle of an offboarding export, then a
restart that resumes it: the tenant's DynamoDB table is reached through a TCP fault proxy that is
black-holed after onboarding, so the export hangs in the item scan (the bucket part read); SIGKILL;
the link is healed; the new process resumes the export at start-up (Offboarder.recover), the
archive is complete, and DeleteTenant erases the tenant (bucket and table gone). MeteringService
runs in this test's process, so the erasure's usage step is real too."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import sqlalchemy as sa
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.config import MeshSettings
from services.common.secrets.resolver import SecretResolver
from services.metering.server import build as build_metering
from services.tenant.db import make_engine
from services.tenant.schema import provisioning_steps, tenants
from tests.contract.emulators import MOTO_CREDENTIALS, Emulator, moto_server  # noqa: F401
from tests.fault_proxy import Mode, fault_proxy
from tests.support import bearer, direct_channel, running_server
from tests.unit.tenant.test_provisioning_kill9 import wait_for

REPO = Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def tenant_process(settings: MeshSettings, db_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKOTO_", "AWS_"))}
    env.update(
        {
            "MAKOTO_HOME": str(settings.home),
            "MAKOTO_TLS_DIR": str(settings.tls_path),
            "MAKOTO_TENANT_PORT": str(settings.tenant_port),
            "MAKOTO_METERING_PORT": str(settings.metering_port),  # served by this test's process
            "MAKOTO_TENANT_DB_URL": db_url,
            "MAKOTO_EGRESS_ALLOW": ",".join(settings.egress_allow),  # moto on loopback
            "MAKOTO_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.tenant"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def test_kill_9_mid_export_then_restart_resumes_and_delete_erases(
    settings: MeshSettings,
    moto_server: Emulator,  # noqa: F811
    tmp_path: Path,
) -> None:
    db_url = f"sqlite+aiosqlite:///{settings.data_dir / 'tenant.sqlite3'}"
    tid = f"ok9-{uuid.uuid4().hex[:10]}"
    # Secret references in a binding must be the tenant's own (local://tenants/<id>/...).
    ref = SecretResolver.for_settings(settings).set(f"tenants/{tid}/aws-keys", json.dumps(MOTO_CREDENTIALS))
    log = tmp_path / "tenant.log"
    engine = make_engine(db_url)
    exports = settings.data_dir / "exports" / tid
    admin = bearer(settings, "platform-admin")

    async def journal() -> dict[str, str]:
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    sa.select(provisioning_steps.c.step, provisioning_steps.c.state).where(
                        provisioning_steps.c.tenant_id == tid
                    )
                )
                return {step.split(":")[0]: state for step, state in rows}
        except sa.exc.OperationalError:
            return {}  # the schema is not migrated yet

    async def state() -> str | None:
        async with engine.connect() as conn:
            return (
                await conn.execute(sa.select(tenants.c.state).where(tenants.c.tenant_id == tid))
            ).scalar_one_or_none()

    host, port = moto_server.endpoint.removeprefix("http://").split(":")
    aws = {
        "endpoint_url": moto_server.endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "x",
        "aws_secret_access_key": "y",
    }
    try:
        async with (
            running_server(functools.partial(build_metering), settings),
            fault_proxy(host, int(port)) as proxy,
        ):
            bindings = tenant_pb2.TenantBindings(
                object_store=tenant_pb2.ObjectStoreBinding(
                    backend=tenant_pb2.OBJECT_BACKEND_S3,
                    endpoint=moto_server.endpoint,
                    region="us-east-1",
                    path_style=True,
                    credentials_secret_ref=ref,
                    options={"managed": "true"},
                ),
                item_store=tenant_pb2.ItemStoreBinding(
                    backend=tenant_pb2.ITEM_BACKEND_DYNAMODB,
                    endpoint=f"http://127.0.0.1:{proxy.port}",
                    region="us-east-1",
                    credentials_secret_ref=ref,
                    options={"managed": "true"},
                ),
            )
            bucket = f"makoto-{tid}-assets"
            with tenant_process(settings, db_url, log) as first:
                async with direct_channel(settings.address("tenant")) as channel:
                    stub = tenant_pb2_grpc.TenantServiceStub(channel)
                    created = await stub.CreateTenant(
                        tenant_pb2.CreateTenantRequest(
                            tenant=tenant_pb2.Tenant(
                                tenant_id=tid, cloud_provider=tenant_pb2.CLOUD_PROVIDER_AWS, bindings=bindings
                            )
                        ),
                        metadata=admin,
                        wait_for_ready=True,
                        timeout=60,
                    )
                    assert created.state == tenant_pb2.TENANT_STATE_ACTIVE, created.state_reason
                    await proxy.set_mode(Mode.BLACKHOLE)
                    operation = await stub.OffboardTenant(
                        tenant_pb2.OffboardTenantRequest(tenant_id=tid), metadata=admin, timeout=30
                    )
                    assert not operation.done  # the export runs in the background

                    async def exporting() -> bool:
                        return (await journal()).get("offboard.export") == "STARTED"

                    await wait_for(exporting, "the export step to start")
                    await asyncio.sleep(0.5)  # inside the item scan, hanging on the black hole
                os.kill(first.pid, signal.SIGKILL)
                first.wait(timeout=10)
            assert await state() == "OFFBOARDING"
            assert (await journal())["offboard.export"] == "STARTED"
            assert not list(exports.glob("*.tar.gz")), "no archive may exist before the export finished"

            await proxy.set_mode(Mode.PASS)
            with tenant_process(settings, db_url, log):

                async def exported() -> bool:
                    return (await journal()).get("offboard.export") == "DONE"

                await wait_for(exported, "the restarted TenantService to finish the export")
                (archive,) = exports.glob("*.tar.gz")
                with tarfile.open(archive, "r:gz") as tar:
                    manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
                assert (
                    manifest["tenant_id"] == tid and manifest["export_id"] == operation.name.rsplit("/", 1)[1]
                )
                assert not list(exports.glob("*.partial"))

                async with direct_channel(settings.address("tenant")) as channel:
                    stub = tenant_pb2_grpc.TenantServiceStub(channel)
                    deleted = await stub.DeleteTenant(
                        tenant_pb2.DeleteTenantRequest(tenant_id=tid),
                        metadata=admin,
                        wait_for_ready=True,
                        timeout=60,
                    )
                    assert deleted.state == tenant_pb2.TENANT_STATE_DELETED
                    done = await stub.GetOperation(
                        tenant_pb2.GetOperationRequest(
                            tenant_id=tid, operation_id=operation.name.rsplit("/", 1)[1]
                        ),
                        metadata=admin,
                    )
                    assert done.done and not done.HasField("error")
        assert not exports.exists()
        assert bucket not in {b["Name"] for b in boto3.client("s3", **aws).list_buckets()["Buckets"]}
        assert f"makoto-{tid}-items" not in boto3.client("dynamodb", **aws).list_tables()["TableNames"]
    except BaseException:
        print(log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)")
        raise
    finally:
        await engine.dispose()
