"""EraseTenantUsage (offboarding): invoices kept, usage erased, late usage dropped; internal only.
On SQLite and PostgreSQL (the suite's `metering` fixture)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from makoto.metering.v1 import metering_pb2

from services.common.identity import Role
from tests.support import bearer
from tests.unit.metering.conftest import Metering, new_tenant
from tests.unit.metering.test_service import event, query, record


def _month(when: datetime) -> str:
    return when.strftime("%Y-%m")


async def _erase(m: Metering, tenant: str) -> metering_pb2.EraseTenantUsageResponse:
    return await m.stub.EraseTenantUsage(
        metering_pb2.EraseTenantUsageRequest(tenant_id=tenant), metadata=bearer(m.settings, Role.SERVICE)
    )


async def _invoice(m: Metering, tenant: str, month: str) -> metering_pb2.Invoice:
    return await m.stub.GetInvoice(
        metering_pb2.GetInvoiceRequest(tenant_id=tenant, month=month),
        metadata=bearer(m.settings, Role.PLATFORM_ADMIN),
    )


async def test_erasure_keeps_invoices_and_erases_usage(metering: Metering) -> None:
    tenant, other = new_tenant(), new_tenant()
    now = datetime.now(UTC)
    earlier = (now.replace(day=1) - timedelta(days=40)).replace(hour=12)
    await record(
        metering,
        [
            event(f"{tenant}-1", tenant, "api_calls", earlier, 5, {"status": "OK"}),
            event(f"{tenant}-2", tenant, "llm_tokens", now - timedelta(minutes=1), 700),
            event(f"{other}-1", other, "llm_tokens", now - timedelta(minutes=1), 9),
        ],
    )
    before = {month: await _invoice(metering, tenant, month) for month in (_month(earlier), _month(now))}
    assert any(line.quantity != "0" for inv in before.values() for line in inv.line_items)

    erased = await _erase(metering, tenant)
    # The two events, plus the platform's own metered calls about the tenant (the invoice reads).
    assert erased.usage_events_erased >= 2
    assert _month(earlier) in erased.invoices_kept and _month(now) in erased.invoices_kept

    # The usage is gone; the other tenant's is untouched.
    start = earlier - timedelta(days=1)
    assert await query(metering, tenant, "llm_tokens", start=start, role=Role.PLATFORM_ADMIN) == []
    others = await query(metering, other, "llm_tokens", start=start, role=Role.PLATFORM_ADMIN)
    assert [row[3] for row in others] == [9]
    # The invoices are kept as they were priced, now final.
    for month, invoice in before.items():
        kept = await _invoice(metering, tenant, month)
        assert kept.final
        assert [(line.meter, line.quantity, line.amount) for line in kept.line_items] == [
            (line.meter, line.quantity, line.amount) for line in invoice.line_items
        ]
        assert kept.total == invoice.total

    # Late usage (spooled before the erasure) is dropped, and a second erasure keeps what was kept.
    late = await record(metering, [event(f"{tenant}-late", tenant, "llm_tokens", now, 50)])
    assert late.accepted == 0
    assert await query(metering, tenant, "llm_tokens", start=start, role=Role.PLATFORM_ADMIN) == []
    again = await _erase(metering, tenant)
    assert again.usage_events_erased == 0 and list(again.invoices_kept) == list(erased.invoices_kept)


@pytest.mark.parametrize("role", [Role.PLATFORM_ADMIN, Role.TENANT_ADMIN])
async def test_erasure_is_for_services_only(metering: Metering, role: Role) -> None:
    tenant = new_tenant()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await metering.stub.EraseTenantUsage(
            metering_pb2.EraseTenantUsageRequest(tenant_id=tenant),
            metadata=bearer(metering.settings, role, None if role is Role.PLATFORM_ADMIN else tenant),
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
