"""kill -9 of a real TenantService process in the middle of provisioning, then a restart that
resumes it: the DynamoDB endpoint is black-holed (a TCP fault proxy in front of moto) so the
process hangs inside the table step after the bucket step is journaled DONE; SIGKILL; the link
is healed; a new process finishes the tenant at start-up (TenantManager.recover)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import grpc
import pytest
import sqlalchemy as sa
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.config import MeshSettings
from services.common.secrets.resolver import SecretResolver
from services.tenant.db import make_engine
from services.tenant.schema import provisioning_steps, tenants
from tests.contract.emulators import MOTO_CREDENTIALS, Emulator, moto_server  # noqa: F401
from tests.fault_proxy import Mode, fault_proxy
from tests.support import bearer, direct_channel, free_port

REPO = Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def tenant_process(settings: MeshSettings, db_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKOTO_", "AWS_"))}
    env.update(
        {
            "MAKOTO_HOME": str(settings.home),
            "MAKOTO_TLS_DIR": str(settings.tls_path),
            "MAKOTO_TENANT_PORT": str(settings.tenant_port),
            "MAKOTO_METERING_PORT": str(free_port()),  # usage is spooled: nothing listens
            "MAKOTO_TENANT_DB_URL": db_url,
            "MAKOTO_LOG_LEVEL": "INFO",
            "MAKOTO_EGRESS_ALLOW": ",".join(settings.egress_allow),  # moto on loopback
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


async def wait_for(condition: object, what: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_kill_9_mid_provisioning_then_restart_resumes(
    settings: MeshSettings,
    moto_server: Emulator,  # noqa: F811
    tmp_path: Path,
) -> None:
    db_url = f"sqlite+aiosqlite:///{settings.data_dir / 'tenant.sqlite3'}"
    tid = f"k9-{uuid.uuid4().hex[:10]}"
    ref = SecretResolver.for_settings(settings).set(f"tenants/{tid}/aws-keys", json.dumps(MOTO_CREDENTIALS))
    log = tmp_path / "tenant.log"
    engine = make_engine(db_url)

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
    try:
        async with fault_proxy(host, int(port)) as proxy:
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
            await proxy.set_mode(Mode.BLACKHOLE)
            with tenant_process(settings, db_url, log) as first:
                channel = direct_channel(settings.address("tenant"))
                stub = tenant_pb2_grpc.TenantServiceStub(channel)
                create = asyncio.ensure_future(
                    stub.CreateTenant(
                        tenant_pb2.CreateTenantRequest(
                            tenant=tenant_pb2.Tenant(
                                tenant_id=tid, cloud_provider=tenant_pb2.CLOUD_PROVIDER_AWS, bindings=bindings
                            )
                        ),
                        metadata=bearer(settings, "platform-admin"),
                        wait_for_ready=True,
                        timeout=120,
                    )
                )

                async def bucket_done() -> bool:
                    if create.done():
                        create.result()  # an early answer is a failure: raise it
                        raise AssertionError("CreateTenant returned although its table step hangs")
                    return (await journal()).get("aws.s3_bucket") == "DONE"

                await wait_for(bucket_done, "the bucket step to be DONE")
                await asyncio.sleep(0.5)  # inside the table step, hanging on the black hole
                os.kill(first.pid, signal.SIGKILL)
                first.wait(timeout=10)
                with pytest.raises(grpc.aio.AioRpcError):
                    await create
                await channel.close()
            assert await state() == "PROVISIONING"
            assert "aws.dynamodb_table" not in {k for k, v in (await journal()).items() if v == "DONE"}

            await proxy.set_mode(Mode.PASS)
            with tenant_process(settings, db_url, log):

                async def active() -> bool:
                    return await state() == "ACTIVE"

                await wait_for(active, "the restarted TenantService to finish provisioning")
        assert await journal() == {
            "local.tenant_directory": "DONE",
            "aws.s3_bucket": "DONE",
            "aws.dynamodb_table": "DONE",
        }
        ddb = boto3.client(
            "dynamodb",
            endpoint_url=moto_server.endpoint,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
        )
        pitr = ddb.describe_continuous_backups(TableName=f"makoto-{tid}-items")[
            "ContinuousBackupsDescription"
        ]
        assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    except BaseException:
        print(log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)")
        raise
    finally:
        await engine.dispose()
