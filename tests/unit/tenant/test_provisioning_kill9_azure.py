"""kill -9 of a real TenantService process in the middle of an Azure tenant's provisioning, at
its third step (the Cosmos DB database, after the Blob container step is journaled DONE), then a
restart that resumes it.

The tenant's Cosmos endpoint is a TCP fault proxy in front of the Cosmos emulator, black-holed so
the process hangs inside the Cosmos step; SIGKILL; the link is healed; a new process finishes the
tenant at start-up (TenantManager.recover). Checked with the Azure SDKs afterwards: exactly one
Blob container and one Cosmos database (with its one `items` container) for the tenant, tenant
ACTIVE, every step DONE once. One drill, bounded: it ends in well under a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from azure.cosmos.aio import CosmosClient
from azure.storage.blob.aio import BlobServiceClient
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.config import MeshSettings
from services.common.secrets.resolver import SecretResolver
from services.storage.adapters.azure_blob.config import default_container
from services.tenant.db import make_engine
from services.tenant.schema import operations, provisioning_steps, tenants
from tests.contract.emulators import Azurite, azurite  # noqa: F401
from tests.contract.item_emulators import COSMOS_EMULATOR_KEY, Emulator, item_cosmos  # noqa: F401
from tests.fault_proxy import Mode, fault_proxy
from tests.support import bearer, direct_channel
from tests.unit.tenant.test_provisioning_kill9 import tenant_process, wait_for


async def test_kill_9_in_the_cosmos_step_then_restart_resumes_the_azure_tenant(
    settings: MeshSettings,
    azurite: Azurite,  # noqa: F811
    item_cosmos: Emulator,  # noqa: F811
    tmp_path: Path,
) -> None:
    drill_started = time.monotonic()
    db_url = f"sqlite+aiosqlite:///{settings.data_dir / 'tenant.sqlite3'}"
    tid = f"azk9-{uuid.uuid4().hex[:10]}"
    resolver = SecretResolver.for_settings(settings)
    blob_ref = resolver.set(
        f"tenants/{tid}/azure-blob", json.dumps({"account_key": azurite.key, "account_name": azurite.account})
    )
    cosmos_ref = resolver.set(f"tenants/{tid}/azure-cosmos", COSMOS_EMULATOR_KEY)
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

    host, port = item_cosmos.endpoint.removeprefix("https://").split(":")
    try:
        async with fault_proxy(host, int(port)) as proxy:
            bindings = tenant_pb2.TenantBindings(
                object_store=tenant_pb2.ObjectStoreBinding(
                    backend=tenant_pb2.OBJECT_BACKEND_AZURE_BLOB,
                    endpoint=azurite.account_url,
                    credentials_secret_ref=blob_ref,
                    options={"managed": "true"},
                ),
                item_store=tenant_pb2.ItemStoreBinding(
                    backend=tenant_pb2.ITEM_BACKEND_COSMOS,
                    endpoint=f"https://127.0.0.1:{proxy.port}",
                    credentials_secret_ref=cosmos_ref,
                    # The emulator advertises its own address: no discovery, stay on the proxy.
                    options={"managed": "true", "connection_verify": "false", "endpoint_discovery": "false"},
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
                                tenant_id=tid,
                                cloud_provider=tenant_pb2.CLOUD_PROVIDER_AZURE,
                                bindings=bindings,
                            )
                        ),
                        metadata=bearer(settings, "platform-admin"),
                        wait_for_ready=True,
                        timeout=120,
                    )
                )

                async def container_done() -> bool:
                    if create.done():
                        create.result()  # an early answer is a failure: raise it
                        raise AssertionError("CreateTenant returned although its Cosmos step hangs")
                    return (await journal()).get("azure.blob_container") == "DONE"

                await wait_for(container_done, "the Blob container step to be DONE", timeout=30)
                await asyncio.sleep(0.5)  # inside the Cosmos step, hanging on the black hole
                # (in its existence probe, which runs before STARTED is journaled)
                assert (await journal()).get("azure.cosmos_database") in (None, "STARTED")
                os.kill(first.pid, signal.SIGKILL)
                first.wait(timeout=10)
                with pytest.raises(grpc.aio.AioRpcError):
                    await create
                await channel.close()
            assert await state() == "PROVISIONING"
            assert proxy.accepted >= 1  # the Cosmos step did reach for the (black-holed) account

            await proxy.set_mode(Mode.PASS)
            with tenant_process(settings, db_url, log):

                async def active() -> bool:
                    return await state() == "ACTIVE"

                await wait_for(active, "the restarted TenantService to finish provisioning", timeout=30)
        assert await journal() == {
            "local.tenant_directory": "DONE",
            "azure.blob_container": "DONE",
            "azure.cosmos_database": "DONE",
        }
        async with engine.connect() as conn:
            runs = (
                await conn.execute(sa.select(operations.c.state).where(operations.c.tenant_id == tid))
            ).all()
        assert [r.state for r in runs] == ["SUCCEEDED"]  # the resumed run is the first one

        # Asked with the SDKs: exactly one container and one database of the tenant.
        async with BlobServiceClient(
            azurite.account_url, credential={"account_name": azurite.account, "account_key": azurite.key}
        ) as svc:
            mine = [c["name"] async for c in svc.list_containers() if tid in c["name"]]
        assert mine == [default_container(tid)]
        async with CosmosClient(
            item_cosmos.endpoint, credential=COSMOS_EMULATOR_KEY, connection_verify=False
        ) as client:
            dbs = [d["id"] async for d in client.list_databases() if tid in d["id"]]
            assert dbs == [f"makoto-{tid}"]
            inside = [c["id"] async for c in client.get_database_client(dbs[0]).list_containers()]
            assert inside == ["items"]
        assert time.monotonic() - drill_started < 60
    except BaseException:
        print(log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)")
        raise
    finally:
        await engine.dispose()
