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
