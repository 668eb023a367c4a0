"""Tenant limits in MeteringService (SQLite and PostgreSQL): the inheritance chain (overrides ->
the tenant's plan -> the default plan -> platform defaults), usage against the budget and quota,
and who may read or set them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import grpc
import pytest
from makoto.metering.v1 import metering_pb2

from services.common.identity import Role
from services.common.limits.model import DEFAULTS
from tests.support import bearer
from tests.unit.metering.conftest import Metering, new_tenant
from tests.unit.metering.test_service import event, record


def admin(m: Metering) -> tuple[tuple[str, str], ...]:
    return bearer(m.settings, Role.PLATFORM_ADMIN)


async def limits(m: Metering, tenant: str, role: Role = Role.MEMBER) -> metering_pb2.TenantLimits:
    md = bearer(m.settings, role, tenant if role in (Role.MEMBER, Role.TENANT_ADMIN) else None)
    return await m.stub.GetTenantLimits(metering_pb2.GetTenantLimitsRequest(tenant_id=tenant), metadata=md)


async def test_inheritance_overrides_plan_default_plan_platform(metering: Metering) -> None:
    tenant, plan_id = new_tenant(), f"gold-{new_tenant()}"
    fresh = await limits(metering, tenant)
    # Nothing set anywhere: the platform's safe defaults.
    assert fresh.effective.api.burst == DEFAULTS.api.burst  # type: ignore[union-attr]
    assert fresh.effective.storage_quota_bytes == DEFAULTS.storage_quota_bytes
    assert not fresh.HasField("overrides") or fresh.overrides.ByteSize() == 0

    default = await metering.stub.GetPricePlan(
        metering_pb2.GetPricePlanRequest(plan_id="default"), metadata=admin(metering)
    )
    gold = metering_pb2.PricePlan(
        plan_id=plan_id,
        currency="USD",
        prices=default.prices,
        limits=metering_pb2.PlanLimits(
            api=metering_pb2.RateLimit(requests_per_second=500, burst=1000), llm_monthly_tokens=7_000_000
        ),
    )
    stored = await metering.stub.SetPricePlan(
        metering_pb2.SetPricePlanRequest(plan=gold), metadata=admin(metering)
    )
    assert stored.limits == gold.limits
    metering.plans.assign(tenant, plan_id)
    on_plan = await limits(metering, tenant)
    assert on_plan.price_plan_id == plan_id
    assert (on_plan.effective.api.requests_per_second, on_plan.effective.api.burst) == (500, 1000)
    assert on_plan.effective.llm_monthly_tokens == 7_000_000
    assert on_plan.effective.max_object_bytes == DEFAULTS.max_object_bytes  # inherited

    overrides = metering_pb2.PlanLimits(llm_monthly_tokens=1000, max_object_bytes=1234)
    answer = await metering.stub.SetTenantLimits(
        metering_pb2.SetTenantLimitsRequest(tenant_id=tenant, overrides=overrides), metadata=admin(metering)
    )
    assert answer.overrides == overrides
    assert answer.effective.llm_monthly_tokens == 1000 and answer.effective.max_object_bytes == 1234
    assert answer.effective.api.burst == 1000  # still the plan's
    # Clearing the overrides brings back the plan's values.
    cleared = await metering.stub.SetTenantLimits(
        metering_pb2.SetTenantLimitsRequest(tenant_id=tenant), metadata=admin(metering)
    )
    assert cleared.effective.llm_monthly_tokens == 7_000_000


async def test_budget_and_quota_usage(metering: Metering) -> None:
    tenant = new_tenant()
    await metering.stub.SetTenantLimits(
        metering_pb2.SetTenantLimitsRequest(
            tenant_id=tenant,
            overrides=metering_pb2.PlanLimits(
                llm_monthly_tokens=1000, llm_monthly_spend="0.05", storage_quota_bytes=10_000
            ),
        ),
        metadata=admin(metering),
    )
    now = datetime.now(UTC)
    last_month = datetime(now.year - 1, 1, 15, tzinfo=UTC)
    await record(
        metering,
        [
            event(f"{tenant}-p", tenant, "llm_prompt_tokens", now, 300),
            event(f"{tenant}-c", tenant, "llm_completion_tokens", now, 100),
            event(f"{tenant}-old", tenant, "llm_prompt_tokens", last_month, 5000),  # another month
            event(f"{tenant}-s1", tenant, "storage_bytes", last_month, 6000),
            event(f"{tenant}-s2", tenant, "storage_bytes", now, -1000),
        ],
    )
    answer = await limits(metering, tenant, Role.TENANT_ADMIN)
    budget = answer.llm_budget
    assert budget.month == now.strftime("%Y-%m")
    assert (budget.tokens_used, budget.tokens_remaining) == (400, 600)
    assert Decimal(budget.spend_used) == Decimal("0.008")  # 400 x 0.00002
    assert Decimal(budget.spend_remaining) == Decimal("0.042")
    assert (answer.storage_bytes_used, answer.storage_bytes_remaining) == (5000, 5000)
    assert answer.llm_prompt_token_price == "0.00002"


async def test_who_may_read_and_set(metering: Metering) -> None:
    tenant, other = new_tenant(), new_tenant()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await metering.stub.GetTenantLimits(
            metering_pb2.GetTenantLimitsRequest(tenant_id=tenant),
            metadata=bearer(metering.settings, Role.MEMBER, other),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await metering.stub.SetTenantLimits(
            metering_pb2.SetTenantLimitsRequest(
                tenant_id=tenant, overrides=metering_pb2.PlanLimits(max_object_bytes=1)
            ),
            metadata=bearer(metering.settings, Role.TENANT_ADMIN, tenant),
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Services (the data plane) read any tenant's limits.
    await limits(metering, tenant, Role.SERVICE)
    await limits(metering, tenant, Role.PLATFORM_ADMIN)
    # Bad values are refused with the field named.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await metering.stub.SetTenantLimits(
            metering_pb2.SetTenantLimitsRequest(
                tenant_id=tenant,
                overrides=metering_pb2.PlanLimits(llm_monthly_spend="-3", max_object_bytes=0),
            ),
            metadata=admin(metering),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
