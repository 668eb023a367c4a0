"""An Azure tenant through TenantService's API against Azurite and the Cosmos emulator: managed
Blob container and Cosmos DB database + container provisioned, used by the storage adapters
without auto_provision, a failing step compensated, and everything gone after offboarding.
Resources are checked with the Azure SDKs, not through our own code."""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from azure.cosmos.aio import CosmosClient
from azure.storage.blob.aio import BlobServiceClient
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.bindings.egress import EgressPolicy
from services.common.config import MeshSettings
from services.common.secrets.resolver import SecretResolver
from services.storage.adapters.azure_blob.config import default_container
from services.storage.adapters.cosmos_items.config import CosmosItemConfig
from services.storage.adapters.cosmos_items.store import CosmosItemStore
from services.storage.ports import ItemKey
from services.tenant.adapters.local_identity import LocalIdentityProvider
from services.tenant.adapters.local_provisioner import LocalProvisioner
from services.tenant.adapters.sql_store import SqlTenantStore
from services.tenant.db import make_engine, migrate
from services.tenant.model import CloudProvider, State, TenantSpec
from services.tenant.provisioning.journal import OperationState, SqlJournal, StepState
from services.tenant.provisioning.plan import Planner
from services.tenant.provisioning.workflow import Step, WorkflowProvisioner
from services.tenant.server import build
from services.tenant.tenants import TenantManager
from tests.contract.emulators import Azurite, azurite  # noqa: F401
from tests.contract.item_emulators import COSMOS_EMULATOR_KEY, Emulator, item_cosmos  # noqa: F401
from tests.support import bearer, direct_channel, running_server
from tests.unit.tenant.test_provisioning_aws import Dying, SimulatedKill


@pytest.fixture
async def stub(settings: MeshSettings) -> AsyncIterator[tenant_pb2_grpc.TenantServiceStub]:
    url = f"sqlite+aiosqlite:///{settings.data_dir / 'tenant.sqlite3'}"
    async with running_server(functools.partial(build, db_url=url, recorder_factory=None), settings):
        async with direct_channel(settings.address("tenant")) as channel:
            yield tenant_pb2_grpc.TenantServiceStub(channel)


def bindings(settings: MeshSettings, blob: Azurite, cosmos: Emulator, tid: str) -> tenant_pb2.TenantBindings:
    resolver = SecretResolver.for_settings(settings)
    blob_ref = resolver.set(
        f"tenants/{tid}/azure-blob", json.dumps({"account_key": blob.key, "account_name": blob.account})
    )
    cosmos_ref = resolver.set(f"tenants/{tid}/azure-cosmos", COSMOS_EMULATOR_KEY)
    return tenant_pb2.TenantBindings(
        object_store=tenant_pb2.ObjectStoreBinding(
            backend=tenant_pb2.OBJECT_BACKEND_AZURE_BLOB,
            endpoint=blob.account_url,
            credentials_secret_ref=blob_ref,
            options={"managed": "true"},
        ),
        item_store=tenant_pb2.ItemStoreBinding(
            backend=tenant_pb2.ITEM_BACKEND_COSMOS,
            endpoint=cosmos.endpoint,
            credentials_secret_ref=cosmos_ref,
            options={"managed": "true", "connection_verify": "false"},
        ),
    )


async def containers(blob: Azurite) -> set[str]:
    async with BlobServiceClient(
        blob.account_url, credential={"account_name": blob.account, "account_key": blob.key}
    ) as svc:
        return {c["name"] async for c in svc.list_containers()}


async def databases(cosmos: Emulator) -> dict[str, list[str]]:
    """database -> partition key paths of its containers."""
    async with CosmosClient(
        cosmos.endpoint, credential=COSMOS_EMULATOR_KEY, connection_verify=False
    ) as client:
        out: dict[str, list[str]] = {}
        async for db in client.list_databases():
            proxy = client.get_database_client(db["id"])
            out[db["id"]] = [c["partitionKey"]["paths"][0] async for c in proxy.list_containers()]
        return out


async def test_azure_tenant_is_provisioned_used_and_offboarded(
    settings: MeshSettings,
    stub: tenant_pb2_grpc.TenantServiceStub,
    azurite: Azurite,  # noqa: F811
    item_cosmos: Emulator,  # noqa: F811
) -> None:
    admin = bearer(settings, "platform-admin")
    tid = f"az-{uuid.uuid4().hex[:10]}"
    made = bindings(settings, azurite, item_cosmos, tid)
    created = await stub.CreateTenant(
        tenant_pb2.CreateTenantRequest(
            tenant=tenant_pb2.Tenant(
                tenant_id=tid, cloud_provider=tenant_pb2.CLOUD_PROVIDER_AZURE, bindings=made
            )
        ),
        metadata=admin,
    )
    assert created.state == tenant_pb2.TENANT_STATE_ACTIVE, created.state_reason
    assert default_container(tid) in await containers(azurite)
    assert (await databases(item_cosmos)).get(f"makoto-{tid}") == ["/pk"]

    # The item adapter works on the provisioned container (no auto_provision in the binding).
    store = CosmosItemStore(CosmosItemConfig.from_binding(tid, made.item_store, COSMOS_EMULATOR_KEY))
    try:
        await store.put(ItemKey("notes", "p1", "s1"), {"title": "x"})
        assert (await store.get(ItemKey("notes", "p1", "s1"))).attributes == {"title": "x"}
    finally:
        await store.close()

    await stub.DeleteTenant(tenant_pb2.DeleteTenantRequest(tenant_id=tid), metadata=admin)
    assert default_container(tid) not in await containers(azurite)
    assert f"makoto-{tid}" not in await databases(item_cosmos)


async def test_a_failing_cosmos_step_removes_the_container_made_before_it(
    settings: MeshSettings,
    stub: tenant_pb2_grpc.TenantServiceStub,
    azurite: Azurite,  # noqa: F811
    item_cosmos: Emulator,  # noqa: F811
) -> None:
    admin = bearer(settings, "platform-admin")
    tid = f"az-{uuid.uuid4().hex[:10]}"
    made = bindings(settings, azurite, item_cosmos, tid)
    made.item_store.credentials_secret_ref = SecretResolver.for_settings(settings).set(
        f"tenants/{tid}/bad-key", "not base64!"
    )
    created = await stub.CreateTenant(
        tenant_pb2.CreateTenantRequest(
            tenant=tenant_pb2.Tenant(
                tenant_id=tid, cloud_provider=tenant_pb2.CLOUD_PROVIDER_AZURE, bindings=made
            )
        ),
        metadata=admin,
    )
    assert created.state == tenant_pb2.TENANT_STATE_FAILED
    assert created.state_reason.startswith(f"step azure.cosmos_database:makoto-{tid} failed: ")
    assert "not a Cosmos DB account key" in created.state_reason
    assert default_container(tid) not in await containers(azurite)


AZURE_STEP_KINDS = ("local.", "azure.blob_container", "azure.cosmos_database")


@pytest.mark.parametrize("when", ["before", "after"])
async def test_azure_provisioning_resumes_after_dying_at_every_step(
    settings: MeshSettings,
    azurite: Azurite,  # noqa: F811
    item_cosmos: Emulator,  # noqa: F811
    when: str,
) -> None:
    """As the AWS drill: the process dies at step 1, restarts and dies at step 2, ... then a
    clean restart finishes the operation; offboarding removes what every attempt made."""
    engine = make_engine(f"sqlite+aiosqlite:///{settings.data_dir / 'tenant.sqlite3'}")
    await migrate(engine)
    planner = Planner(LocalProvisioner(settings.data_dir), SecretResolver.for_settings(settings))

    def dying_at(kill_at: int) -> Any:
        def plan(tenant: Any) -> Sequence[Step]:
            steps = list(planner(tenant))
            assert [s.name.split(":")[0] for s in steps][1:] == list(AZURE_STEP_KINDS[1:])
            steps[kill_at] = Dying(steps[kill_at], when)
            return steps

        return plan

    def manager(plan: Any) -> TenantManager:
        return TenantManager(
            SqlTenantStore(engine),
            WorkflowProvisioner(plan, SqlJournal(engine)),
            LocalIdentityProvider(engine),
            egress=EgressPolicy(settings.egress_allow),  # the emulators on loopback
        )

    tid = f"az-{uuid.uuid4().hex[:10]}"
    spec = TenantSpec(
        tenant_id=tid,
        cloud_provider=CloudProvider.AZURE,
        bindings=bindings(settings, azurite, item_cosmos, tid),
    )
    store = SqlTenantStore(engine)
    try:
        with pytest.raises(SimulatedKill):
            await manager(dying_at(0)).create(spec, request_id="")
        for kill_at in range(1, len(AZURE_STEP_KINDS)):
            with pytest.raises(SimulatedKill):
                await manager(dying_at(kill_at)).recover()  # a restart that dies again
            stuck = await store.get(tid)
            assert stuck is not None and stuck.state == State.PROVISIONING
            steps = await SqlJournal(engine).steps(tid)
            assert [r.state for r in steps][:kill_at] == [StepState.DONE] * kill_at

        await manager(planner).recover()  # what a restart runs
        tenant = await store.get(tid)
        assert tenant is not None and tenant.state == State.ACTIVE, tenant.state_reason if tenant else None
        assert default_container(tid) in await containers(azurite)
        assert (await databases(item_cosmos)).get(f"makoto-{tid}") == ["/pk"]
        journal = SqlJournal(engine)
        assert [r.state for r in await journal.steps(tid)] == [StepState.DONE] * len(AZURE_STEP_KINDS)
        assert [o.state for o in await journal.operations_of(tid)] == [OperationState.SUCCEEDED]

        await manager(planner).delete(tid, etag="")
        assert default_container(tid) not in await containers(azurite)
        assert f"makoto-{tid}" not in await databases(item_cosmos)
    finally:
        await engine.dispose()
