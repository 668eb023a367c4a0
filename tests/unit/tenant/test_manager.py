"""The lifecycle use cases behind the API, where the API cannot easily get: an offboarding that
fails half-way, start-up recovery of interrupted work, and concurrent writers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.common.errors import Aborted, FailedPrecondition, Unavailable
from services.tenant.adapters.local_identity import LocalIdentityProvider
from services.tenant.adapters.local_provisioner import LocalProvisioner
from services.tenant.adapters.sql_store import SqlTenantStore
from services.tenant.bindings import default_bindings
from services.tenant.db import make_engine, migrate
from services.tenant.model import State, TenantRecord, TenantSpec, UserRole
from services.tenant.ports import ProvisioningError
from services.tenant.tenants import TenantManager
from services.tenant.users import UserManager


class FlakyProvisioner:
    """The local provisioner, with deprovisioning failing a given number of times
    (another implementation of the Provisioner port, as a cloud outage would behave)."""

    def __init__(self, data_dir: Path, deprovision_failures: int = 0) -> None:
        self.local = LocalProvisioner(data_dir)
        self.failures_left = deprovision_failures

    async def provision(self, tenant: TenantRecord) -> None:
        await self.local.provision(tenant)

    async def deprovision(self, tenant: TenantRecord) -> None:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise ProvisioningError("cloud deprovisioning failed: service unavailable")
        await self.local.deprovision(tenant)


@dataclass
class Domain:
    store: SqlTenantStore
    provisioner: FlakyProvisioner
    tenants: TenantManager
    users: UserManager
    data_dir: Path


@pytest.fixture
async def domain(tmp_path: Path) -> AsyncIterator[Domain]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'tenant.sqlite3'}")
    await migrate(engine)
    store = SqlTenantStore(engine)
    identity = LocalIdentityProvider(engine)
    provisioner = FlakyProvisioner(tmp_path / "data")
    tenants = TenantManager(store, provisioner, identity)
    try:
        yield Domain(store, provisioner, tenants, UserManager(tenants, identity), tmp_path / "data")
    finally:
        await engine.dispose()


async def test_interrupted_offboarding_stays_deleting_until_retried(domain: Domain) -> None:
    await domain.tenants.create(TenantSpec(tenant_id="sticky"), request_id="")
    await domain.users.invite("sticky", "a@b.test", UserRole.MEMBER)
    domain.provisioner.failures_left = 1

    with pytest.raises(Unavailable) as info:
        await domain.tenants.delete("sticky", etag="")
    assert info.value.reason == "DEPROVISIONING_FAILED"
    stuck = await domain.tenants.get("sticky")
    assert stuck.state == State.DELETING
    assert (domain.data_dir / "tenants" / "sticky").is_dir()

    with pytest.raises(FailedPrecondition) as refused:
        await domain.tenants.update("sticky", lambda _t: {"display_name": "x"}, etag="")
    assert "DELETING" in refused.value.message
    with pytest.raises(FailedPrecondition) as not_active:
        await domain.users.invite("sticky", "c@d.test", UserRole.MEMBER)
    assert not_active.value.reason == "TENANT_NOT_ACTIVE"
    with pytest.raises(FailedPrecondition):
        await domain.tenants.resume("sticky")

    done = await domain.tenants.delete("sticky", etag="")
    assert done.state == State.DELETED
    assert not (domain.data_dir / "tenants" / "sticky").exists()


async def test_recover_finishes_interrupted_provisioning_and_offboarding(domain: Domain) -> None:
    now = datetime.now(UTC)
    for tenant_id, state in (("half-made", State.PROVISIONING), ("half-gone", State.DELETING)):
        await domain.store.insert(
            TenantRecord(
                tenant_id=tenant_id,
                bindings=default_bindings(),
                state=state,
                etag="e0",
                create_time=now,
                update_time=now,
            ),
            None,
        )
    (domain.data_dir / "tenants" / "half-gone" / "objects").mkdir(parents=True)

    await domain.tenants.recover()
    made = await domain.tenants.get("half-made")
    assert made.state == State.ACTIVE
    assert (domain.data_dir / "tenants" / "half-made" / "objects").is_dir()
    gone = await domain.store.get("half-gone")
    assert gone is not None and gone.state == State.DELETED
    assert not (domain.data_dir / "tenants" / "half-gone").exists()


async def test_concurrent_writers_without_etag_all_land(domain: Domain) -> None:
    await domain.tenants.create(TenantSpec(tenant_id="busy"), request_id="")
    fields = ["display_name", "region", "price_plan_id"]

    async def write(i: int) -> None:
        await domain.tenants.update("busy", lambda _t: {fields[i]: f"v{i}"}, etag="")

    await asyncio.gather(*(write(i) for i in range(3)))
    final = await domain.tenants.get("busy")
    # each read-modify-write was based on the latest state, so no write was lost
    assert (final.display_name, final.region, final.price_plan_id) == ("v0", "v1", "v2")


async def test_store_compare_and_swap(domain: Domain) -> None:
    tenant = await domain.tenants.create(TenantSpec(tenant_id="casing"), request_id="")
    await domain.store.replace(tenant, expected_etag=tenant.etag)
    with pytest.raises(Aborted):
        await domain.store.replace(tenant, expected_etag="stale")
