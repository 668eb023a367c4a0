"""DR drill for the platform's own PostgreSQL store (docs/dr.md, "Restore drill").

TenantService and MeteringService share one private database on the local server: tenants,
users, a price plan and usage are written through their APIs, invoices are read back, the
database is dumped with pg_dump (custom format), dropped, recreated empty, restored with
pg_restore, and both services start on it again: tenants, users and invoices must be exactly
what they were, and the services' start-up migrations must accept the restored schema as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import asyncpg
import grpc
import pytest
from google.protobuf import timestamp_pb2
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.config import MeshSettings
from services.common.identity import Role
from services.metering.server import build as build_metering
from services.tenant.server import build as build_tenant
from tests.support import bearer, direct_channel, running_server

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
ADMIN_DSN = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"
TENANTS = ("dr-acme", "dr-globex", "dr-initech")
MONTH = "2025-04"
PLAN = metering_pb2.PricePlan(
    plan_id="dr-plan",
    currency="EUR",
    prices=[
        metering_pb2.MeterPrice(meter="api_calls", unit_price="0.0001", unit="call"),
        metering_pb2.MeterPrice(meter="llm_prompt_tokens", unit_price="0.000003", unit="token"),
    ],
)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, f"{argv[0]} failed ({proc.returncode}): {err.decode(errors='replace')}"
    return out.decode()


@pytest.fixture
async def drill_db() -> AsyncIterator[str]:
    """A uniquely named database on the machine's server, dropped whatever happens."""
    for tool in ("pg_dump", "pg_restore"):
        if shutil.which(tool) is None:
            pytest.fail(f"the restore drill needs {tool} on PATH (Debian: postgresql-client)", pytrace=False)
    try:
        await _admin("SELECT 1")
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(f"the restore drill needs PostgreSQL at {ADMIN_DSN}: {exc!r}", pytrace=False)
    name = f"makoto_dr_drill_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Platform:
    """TenantService + MeteringService on one database, and the reads the drill compares."""

    def __init__(
        self, settings: MeshSettings, channel_t: grpc.aio.Channel, channel_m: grpc.aio.Channel
    ) -> None:
        self.settings = settings
        self.tenants = tenant_pb2_grpc.TenantServiceStub(channel_t)
        self.metering = metering_pb2_grpc.MeteringServiceStub(channel_m)
        self.admin = bearer(settings, Role.PLATFORM_ADMIN)

    async def snapshot(self) -> dict[str, object]:
        listed = await self.tenants.ListTenants(
            tenant_pb2.ListTenantsRequest(page_size=1000, show_deleted=True), metadata=self.admin
        )
        out: dict[str, object] = {
            "tenants": sorted(t.SerializeToString(deterministic=True) for t in listed.tenants)
        }
        for tenant in TENANTS:
            users = await self.tenants.ListUsers(
                tenant_pb2.ListUsersRequest(tenant_id=tenant), metadata=self.admin
            )
            out[f"users/{tenant}"] = sorted(u.SerializeToString(deterministic=True) for u in users.users)
            invoice = await self.metering.GetInvoice(
                metering_pb2.GetInvoiceRequest(tenant_id=tenant, month=MONTH), metadata=self.admin
            )
            out[f"invoice/{tenant}"] = invoice.SerializeToString(deterministic=True)
        plan = await self.metering.GetPricePlan(
            metering_pb2.GetPricePlanRequest(plan_id=PLAN.plan_id), metadata=self.admin
        )
        out["plan"] = plan.SerializeToString(deterministic=True)
        return out


@contextlib.asynccontextmanager
async def platform(settings: MeshSettings, url: str) -> AsyncIterator[Platform]:
    # MeteringService prices each tenant on its price_plan_id from TenantService's directory.
    async with running_server(partial(build_tenant, db_url=url, recorder_factory=None), settings):
        async with running_server(partial(build_metering, db_url=url), settings):
            async with (
                direct_channel(settings.address("tenant")) as channel_t,
                direct_channel(settings.address("metering")) as channel_m,
            ):
                yield Platform(settings, channel_t, channel_m)


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


async def _populate(p: Platform) -> None:
    await p.metering.SetPricePlan(metering_pb2.SetPricePlanRequest(plan=PLAN), metadata=p.admin)
    for n, tenant in enumerate(TENANTS):
        await p.tenants.CreateTenant(
            tenant_pb2.CreateTenantRequest(
                tenant=tenant_pb2.Tenant(
                    tenant_id=tenant, display_name=f"DR {tenant}", price_plan_id=PLAN.plan_id, features=["dr"]
                ),
                request_id=f"dr-{tenant}",
            ),
            metadata=p.admin,
        )
        for email, role in (
            (f"admin@{tenant}.test", tenant_pb2.USER_ROLE_TENANT_ADMIN),
            (f"m@{tenant}.test", tenant_pb2.USER_ROLE_MEMBER),
        ):
            await p.tenants.InviteUser(
                tenant_pb2.InviteUserRequest(
                    tenant_id=tenant, user=tenant_pb2.TenantUser(email=email, role=role)
                ),
                metadata=p.admin,
            )
        events = [
            metering_pb2.UsageEvent(
                id=f"dr-{tenant}-{i}",
                source="dr-drill",
                type=meter,
                subject=tenant,
                time=_ts(datetime(2025, 4, 1 + i, 12, tzinfo=UTC)),
                value=value * (n + 1),
            )
            for i, (meter, value) in enumerate(
                [("api_calls", 1234), ("llm_prompt_tokens", 56789), ("api_calls", 7)]
            )
        ]
        await p.metering.RecordUsage(
            metering_pb2.RecordUsageRequest(events=events), metadata=bearer(p.settings, Role.SERVICE)
        )
    # one tenant in another state, so states survive too
    await p.tenants.SuspendTenant(
        tenant_pb2.SuspendTenantRequest(tenant_id=TENANTS[2], reason="unpaid"), metadata=p.admin
    )


async def test_dump_destroy_restore_keeps_tenants_and_invoices(
    settings: MeshSettings, drill_db: str, tmp_path: Path
) -> None:
    url = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{drill_db}"
    async with platform(settings, url) as p:
        await _populate(p)
        before = await p.snapshot()
    invoice = metering_pb2.Invoice.FromString(before[f"invoice/{TENANTS[1]}"])  # type: ignore[arg-type]
    # the data is real: 2 x (1234 + 7) calls at 0.0001 and 2 x 56789 tokens at 0.000003
    assert invoice.total == "0.588934" and invoice.currency == "EUR"

    # Backup, as docs/dr.md says: custom format, no owner/privileges (restorable under any role).
    dump = tmp_path / "platform.dump"
    conn = ("-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER)
    await _run(
        "pg_dump", *conn, "--format=custom", "--no-owner", "--no-privileges", "-f", str(dump), drill_db
    )
    listing = await _run("pg_restore", "--list", str(dump))
    for table in ("tenants", "users", "usage_events", "price_plan_versions"):
        assert f"TABLE DATA public {table} " in listing, f"{table} missing from the dump"

    # Disaster: the database is gone.
    await _admin(f'DROP DATABASE "{drill_db}" WITH (FORCE)')
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncpg.connect(f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{drill_db}", timeout=5)

    # Restore into a fresh, empty database of the same name.
    await _admin(f'CREATE DATABASE "{drill_db}"')
    await _run(
        "pg_restore", *conn, "--no-owner", "--no-privileges", "--exit-on-error", "-d", drill_db, str(dump)
    )

    async with platform(settings, url) as p:
        after = await p.snapshot()
        # and the restored platform keeps working: a new tenant can be created and billed
        await p.tenants.CreateTenant(
            tenant_pb2.CreateTenantRequest(tenant=tenant_pb2.Tenant(tenant_id="dr-after")), metadata=p.admin
        )
    assert after == before
