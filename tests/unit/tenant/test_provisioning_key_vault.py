"""The Key Vault provisioning step (an Azure tenant's secret names in the platform's vault) in the
workflow, against the Key Vault fake the e2e uses (tests/contract/fake_key_vault.py: HTTPS, the
real azure-keyvault-secrets SDK on both sides of the test):

- compensation: a step after it fails, so the run is undone: every secret carrying the tenant's
  tag is deleted and purged (nothing soft-deleted left), another tenant's secret is untouched;
- resume: the process "dies" before and after the step's secret is written; the restart's
  recovery finishes the tenant ACTIVE with exactly one marker secret (one version).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from azure.keyvault.secrets.aio import SecretClient

from services.common.bindings.egress import EgressPolicy
from services.common.config import MeshSettings
from services.common.secrets.azure_kv_backend import StaticTokenCredential
from services.common.secrets.resolver import SecretResolver
from services.tenant.adapters.local_identity import LocalIdentityProvider
from services.tenant.adapters.local_provisioner import LocalProvisioner
from services.tenant.adapters.sql_store import SqlTenantStore
from services.tenant.db import make_engine, migrate
from services.tenant.model import CloudProvider, State, TenantSpec
from services.tenant.provisioning.azure import PlatformAzureSettings
from services.tenant.provisioning.journal import OperationState, SqlJournal, StepState
from services.tenant.provisioning.plan import Planner
from services.tenant.provisioning.workflow import Step, WorkflowProvisioner
from services.tenant.tenants import TenantManager
from tests.contract.fake_key_vault import FakeKeyVault, make_tls
from tests.contract.secret_backends import VAULT_TOKEN
from tests.unit.tenant.test_provisioning_aws import Dying, SimulatedKill


class FailingStep:
    """A step after the Key Vault step that always fails (as a later cloud call would)."""

    name = "test.failing_after_key_vault"

    async def exists(self) -> bool:
        return False

    async def apply(self) -> None:
        raise RuntimeError("boom")

    async def undo(self) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
async def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeKeyVault]:
    tls = make_tls(tmp_path / "vault-tls")
    fake = FakeKeyVault(tls, token=VAULT_TOKEN)
    await fake.start()
    monkeypatch.setenv("MAKOTO_AZURE_KV_ACCESS_TOKEN", VAULT_TOKEN)
    monkeypatch.setenv("MAKOTO_AZURE_KV_CA_BUNDLE", str(tls.cert))
    monkeypatch.setenv("MAKOTO_AZURE_KV_VERIFY_CHALLENGE_RESOURCE", "false")  # the fake's host
    try:
        yield fake
    finally:
        await fake.stop()


def sdk(vault: FakeKeyVault) -> SecretClient:
    return SecretClient(
        vault.url,
        StaticTokenCredential(VAULT_TOKEN),
        verify_challenge_resource=False,
        connection_verify=str(vault.tls.cert),
    )


class Rig:
    def __init__(self, settings: MeshSettings, vault: FakeKeyVault, engine: Any) -> None:
        self.engine = engine
        self.planner = Planner(
            LocalProvisioner(settings.data_dir),
            SecretResolver.for_settings(settings),
            platform_azure=PlatformAzureSettings(key_vault_url=vault.url),
        )
        self.egress = EgressPolicy(settings.egress_allow)

    def manager(self, plan: Any) -> TenantManager:
        return TenantManager(
            SqlTenantStore(self.engine),
            WorkflowProvisioner(plan, SqlJournal(self.engine)),
            LocalIdentityProvider(self.engine),
            egress=self.egress,
        )


@pytest.fixture
async def rig(settings: MeshSettings, vault: FakeKeyVault) -> AsyncIterator[Rig]:
    engine = make_engine(f"sqlite+aiosqlite:///{settings.data_dir / 'tenant.sqlite3'}")
    await migrate(engine)
    try:
        yield Rig(settings, vault, engine)
    finally:
        await engine.dispose()


def azure_tenant(tid: str) -> TenantSpec:
    # Default (local) bindings: the Key Vault step is the Azure tenant's only cloud step here.
    return TenantSpec(tenant_id=tid, cloud_provider=CloudProvider.AZURE)


async def test_a_later_failing_step_removes_and_purges_the_tenants_key_vault_secrets(
    rig: Rig, vault: FakeKeyVault
) -> None:
    tid = "kvcomp"
    prefix = f"makoto-tenant-{tid}--"
    async with sdk(vault) as client:
        # Another tenant whose id starts the same: its tagged secret must survive.
        await client.set_secret(
            f"makoto-tenant-{tid}-corp--tenant", "x", tags={"makoto:tenant": f"{tid}-corp"}
        )

    def plan(tenant: Any) -> Sequence[Step]:
        steps = list(rig.planner(tenant))
        assert [s.name for s in steps] == ["local.tenant_directory", f"azure.key_vault_secrets:{prefix}"]
        kv = steps[-1]

        class WritesASecretToo:
            """The Key Vault step, then a tenant secret stored under its names (as a binding's
            credentials would be), so compensation has more than the marker to remove."""

            name = kv.name

            async def exists(self) -> bool:
                return await kv.exists()

            async def apply(self) -> None:
                await kv.apply()
                async with sdk(vault) as c:
                    await c.set_secret(f"{prefix}openai", "sk-test", tags={"makoto:tenant": tid})

            async def undo(self) -> None:
                await kv.undo()

            async def close(self) -> None:
                await kv.close()

        return [*steps[:-1], WritesASecretToo(), FailingStep()]

    done = await rig.manager(plan).create(azure_tenant(tid), request_id="")
    assert done.state == State.FAILED
    assert done.state_reason.startswith("step test.failing_after_key_vault failed: ")
    journal = {r.step: r.state for r in await SqlJournal(rig.engine).steps(tid)}
    assert journal[f"azure.key_vault_secrets:{prefix}"] == StepState.REMOVED
    [run] = await SqlJournal(rig.engine).operations_of(tid)
    assert run.state == OperationState.FAILED and run.failed_step == "test.failing_after_key_vault"
    # Nothing of the tenant left, not even soft-deleted; the other tenant's secret is there.
    assert [n for n in vault.secrets if n.startswith(prefix)] == []
    assert [n for n in vault.deleted if n.startswith(prefix)] == []
    assert f"makoto-tenant-{tid}-corp--tenant" in vault.secrets
    async with sdk(vault) as client:
        names = [p.name async for p in client.list_properties_of_secrets()]
    assert not any(n.startswith(prefix) for n in names)


@pytest.mark.parametrize("when", ["before", "after"])
async def test_key_vault_step_resumes_after_dying_in_it(rig: Rig, vault: FakeKeyVault, when: str) -> None:
    tid = f"kvres-{when}"
    prefix = f"makoto-tenant-{tid}--"
    kv_name = f"azure.key_vault_secrets:{prefix}"

    def dying(tenant: Any) -> Sequence[Step]:
        steps = list(rig.planner(tenant))
        assert steps[-1].name == kv_name
        steps[-1] = Dying(steps[-1], when)
        return steps

    with pytest.raises(SimulatedKill):
        await rig.manager(dying).create(azure_tenant(tid), request_id="")
    store = SqlTenantStore(rig.engine)
    stuck = await store.get(tid)
    assert stuck is not None and stuck.state == State.PROVISIONING
    journal = {r.step: r.state for r in await SqlJournal(rig.engine).steps(tid)}
    assert journal == {"local.tenant_directory": StepState.DONE, kv_name: StepState.STARTED}
    assert (f"{prefix}tenant" in vault.secrets) is (when == "after")

    await rig.manager(rig.planner).recover()  # the restart
    resumed = await store.get(tid)
    assert resumed is not None and resumed.state == State.ACTIVE
    journal = {r.step: r.state for r in await SqlJournal(rig.engine).steps(tid)}
    assert journal == {"local.tenant_directory": StepState.DONE, kv_name: StepState.DONE}
    [run] = await SqlJournal(rig.engine).operations_of(tid)
    assert run.state == OperationState.SUCCEEDED
    # Exactly one marker, written once, tagged for the tenant.
    assert [n for n in vault.secrets if n.startswith(prefix)] == [f"{prefix}tenant"]
    assert len(vault.secrets[f"{prefix}tenant"]) == 1
    async with sdk(vault) as client:
        marker = await client.get_secret(f"{prefix}tenant")
    assert marker.value == tid and (marker.properties.tags or {}).get("makoto:tenant") == tid

    # Offboarding undoes the resumed step too: the marker is deleted and purged.
    await rig.manager(rig.planner).delete(tid, etag="")
    assert [n for n in vault.secrets if n.startswith(prefix)] == []
    assert [n for n in vault.deleted if n.startswith(prefix)] == []
