"""Which api_calls an invoice bills (services.metering.billable): by the call's final status and
by who pays. On a real MeteringService, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from services.metering.billable import STATUS_POLICY, billable_status
from tests.unit.metering.conftest import Metering, new_tenant
from tests.unit.metering.test_service import APR, event, invoice, lines, record


def test_every_grpc_status_has_a_stated_policy() -> None:
    import grpc

    assert set(STATUS_POLICY) == {c.name for c in grpc.StatusCode}
    assert billable_status("") is True  # events recorded before statuses existed
    assert billable_status("NOT_A_STATUS") is False


async def test_invoice_bills_only_billable_statuses(metering: Metering) -> None:
    tenant = new_tenant()
    at = APR + timedelta(days=2)
    statuses = {
        "OK": 100,
        "CANCELLED": 7,
        "INVALID_ARGUMENT": 3,
        "NOT_FOUND": 2,
        "DEADLINE_EXCEEDED": 11,
        "UNAVAILABLE": 13,
        "INTERNAL": 17,
        "RESOURCE_EXHAUSTED": 19,
    }
    await record(
        metering,
        [
            event(f"{tenant}-{status}", tenant, "api_calls", at, n, {"status": status, "method": "GetItem"})
            for status, n in statuses.items()
        ]
        + [
            event(f"{tenant}-cut", tenant, "api_calls", at, 5, {"status": "UNAVAILABLE", "ended": "shutdown"})
        ],
    )
    inv = await invoice(metering, tenant, "2025-04")
    # 100 + 7 + 3 + 2 billed; timeouts, outages, shutdown cuts, bugs and refusals are not.
    assert lines(inv)["api_calls"] == ("112", "call", "0.0001", "0.011200")


async def test_operator_calls_are_metered_for_the_platform_not_invoiced(metering: Metering) -> None:
    """A platform-admin's reads of a tenant are recorded (payer=platform, queryable) but never
    on the tenant's invoice; the tenant's own principals' calls are."""
    from datetime import UTC, datetime

    from services.common.identity import Role
    from tests.unit.metering.test_service import query

    tenant = new_tenant()
    now = datetime.now(UTC)
    month = f"{now.year:04d}-{now.month:02d}"
    await invoice(metering, tenant, month, role=Role.MEMBER)
    await invoice(metering, tenant, month, role=Role.TENANT_ADMIN)
    for _ in range(3):
        await invoice(metering, tenant, month, role=Role.PLATFORM_ADMIN)
    rows = await query(metering, tenant, "api_calls", group_by=["payer"], role=Role.PLATFORM_ADMIN)
    assert {r[2]["payer"]: r[3] for r in rows} == {"": 2, "platform": 3}
    # Each invoice is computed before its own call is recorded: 2 tenant calls so far.
    tenant_view = await invoice(metering, tenant, month, role=Role.MEMBER)
    assert lines(tenant_view)["api_calls"][0] == "2"
    operator_view = await invoice(metering, tenant, month, role=Role.PLATFORM_ADMIN)
    assert lines(operator_view)["api_calls"][0] == "3"  # the member's GetInvoice just above
    # Platform-paid events stay out of the tenant's bill in an old month too.
    await record(
        metering,
        [
            event(f"{tenant}-op", tenant, "api_calls", APR, 40, {"status": "OK", "payer": "platform"}),
            event(f"{tenant}-own", tenant, "api_calls", APR, 4, {"status": "OK"}),
        ],
    )
    assert lines(await invoice(metering, tenant, "2025-04"))["api_calls"][0] == "4"


async def test_service_calls_are_metered_for_the_platform_not_invoiced(metering: Metering) -> None:
    """Calls by other services about a tenant (here StorageService and LLMService asking for its
    limits, the reconciler reading its usage) are recorded under the tenant with payer=platform
    and the calling service, queryable, and never on its invoice. Delivering usage (RecordUsage,
    which names no tenant) records nothing: no usage about usage (no RecordUsage row below)."""
    from datetime import UTC, datetime

    from makoto.metering.v1 import metering_pb2

    from services.common.dev_issuer import mint_token
    from services.common.identity import Role, service_audience
    from tests.unit.metering.test_service import query

    def as_service(name: str) -> tuple[tuple[str, str], ...]:
        token = mint_token(
            metering.settings,
            role=Role.SERVICE,
            subject=f"service:{name}",
            audience=service_audience(metering.settings.audience, "metering"),
        )
        return (("authorization", f"Bearer {token}"),)

    tenant = new_tenant()
    now = datetime.now(UTC)
    month = f"{now.year:04d}-{now.month:02d}"
    await record(metering, [event(f"{tenant}-own", tenant, "api_calls", now, 5, {"status": "OK"})])
    before = await invoice(metering, tenant, month, role=Role.MEMBER)  # the tenant's 6th call
    assert lines(before)["api_calls"][0] == "5"

    for name in ("storage", "llm"):
        await metering.stub.GetTenantLimits(
            metering_pb2.GetTenantLimitsRequest(tenant_id=tenant), metadata=as_service(name)
        )
    await metering.stub.QueryUsage(
        metering_pb2.QueryUsageRequest(tenant_id=tenant, meter="storage_bytes"),
        metadata=as_service("storage"),
    )

    rows = await query(
        metering, tenant, "api_calls", group_by=["payer", "caller", "method"], role=Role.PLATFORM_ADMIN
    )
    by = {(r[2]["payer"], r[2]["caller"], r[2]["method"]): r[3] for r in rows}
    assert by == {
        ("", "", ""): 5,  # the recorded events (no method dimension)
        ("", "", "GetInvoice"): 1,
        ("platform", "service:storage", "GetTenantLimits"): 1,
        ("platform", "service:llm", "GetTenantLimits"): 1,
        ("platform", "service:storage", "QueryUsage"): 1,
    }, by
    # Not on the invoice: the tenant's 5 events and its own GetInvoice, nothing of the services'.
    after = await invoice(metering, tenant, month, role=Role.MEMBER)
    assert lines(after)["api_calls"][0] == "6"
    assert lines(after)["api_calls"][3] == "0.000600"
