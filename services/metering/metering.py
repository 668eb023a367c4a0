"""MeteringService's use cases, on its ports (no gRPC, no SQL here)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from services.common.errors import FailedPrecondition, NotFound
from services.common.metering_client import MeterEvent
from services.common.usage import API_CALLS, PAYER, PLATFORM_PAYER
from services.metering import kept_invoices
from services.metering.billable import billable_status
from services.metering.invoices import LEVEL_METERS, gb_months, integrate_level, price
from services.metering.model import Invoice, PricePlan, UsageRow
from services.metering.periods import Month, from_us, month_start_us, next_month_start_us, to_us
from services.metering.ports import PlanResolver, PricePlanStore, UsageStore
from services.metering.pricing import normalize_plan
from services.metering.usage_columns import UsageColumns
from services.metering.usage_query import UsageQuery, check_range, query_usage


class Metering:
    def __init__(
        self,
        usage: UsageStore,
        plans: PricePlanStore,
        resolver: PlanResolver,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._usage = usage
        self._plans = plans
        self._resolver = resolver
        self._clock = clock

    def now_us(self) -> int:
        return to_us(self._clock())

    async def record(self, events: Sequence[MeterEvent]) -> tuple[int, int]:
        """Store events idempotently: (accepted, duplicates). An id seen before is a duplicate
        even when the rest of the event differs: the first version stands."""
        accepted = await self._usage.insert_events(events)
        return accepted, len(events) - accepted

    async def record_columns(self, columns: UsageColumns) -> tuple[int, int]:
        """The same for a checked batch already in columns (the RecordUsage hot path)."""
        accepted = await self._usage.insert_columns(columns)
        return accepted, len(columns) - accepted

    async def query(self, query: UsageQuery) -> list[UsageRow]:
        check_range(query.start_us, query.end_us)
        return await query_usage(self._usage, query)

    async def invoice(self, tenant_id: str, month_text: str) -> Invoice:
        month = Month.parse(month_text)
        kept = await self._usage.kept_invoice(tenant_id, str(month))
        if kept is not None:
            return kept_invoices.from_json(kept)  # an erased tenant's invoice, as it was at erasure
        return await self._price(tenant_id, month)

    async def erase_tenant(self, tenant_id: str) -> tuple[list[str], int]:
        """Offboarding: price every month the tenant has usage in (through the current one) and
        keep those invoices as final, then erase its usage. Idempotent: a second call keeps what
        the first kept and erases nothing more. Returns (months kept, usage events erased)."""
        span = await self._usage.usage_span(tenant_id)
        kept: list[tuple[str, dict[str, Any]]] = []
        if span is not None:
            start = month_start_us(span[0])
            last = max(month_start_us(span[1]), month_start_us(self.now_us()))
            while start <= last:
                month = Month.parse(from_us(start).strftime("%Y-%m"))
                invoice = dataclasses.replace(await self._price(tenant_id, month), final=True)
                kept.append((str(month), kept_invoices.to_json(invoice)))
                start = next_month_start_us(start)
        erased = await self._usage.erase_tenant(tenant_id, kept)
        return await self._usage.kept_months(tenant_id), erased

    async def _price(self, tenant_id: str, month: Month) -> Invoice:
        now = self.now_us()
        plan_id = await self._resolver.plan_id_for(tenant_id)
        # The version in force when the month began: a plan change never re-prices a month.
        plan = await self._plans.plan_in_force(plan_id, month.start_us)
        if plan is None:
            raise FailedPrecondition(
                f"price plan {plan_id} of tenant {tenant_id} does not exist", reason="PRICE_PLAN_MISSING"
            )
        start, end = month.start_us, month.end_us
        counted = [p.meter for p in plan.prices if p.meter not in LEVEL_METERS]
        totals = await self._usage.totals(tenant_id=tenant_id, meters=counted, start_us=start, end_us=end)
        quantities = {meter: Decimal(totals.get(meter, 0)) for meter in counted}
        if API_CALLS in quantities:
            quantities[API_CALLS] = Decimal(await self._billable_calls(tenant_id, start, end))
        for meter in (p.meter for p in plan.prices if p.meter in LEVEL_METERS):
            quantities[meter] = await self._level_quantity(tenant_id, meter, start, end, now)
        return price(
            tenant_id=tenant_id, month=str(month), plan=plan, quantities=quantities, final=now >= end
        )

    async def _billable_calls(self, tenant_id: str, start: int, end: int) -> int:
        """api_calls the tenant pays for: billable statuses only (services.metering.billable),
        and never the platform's own calls about the tenant (payer=platform)."""
        rows = await self._usage.aggregate(
            tenant_id=tenant_id,
            meter=API_CALLS,
            start_us=start,
            end_us=end,
            bucket_us=None,
            group_by=("status", PAYER),
            limit=1000,
        )
        return sum(
            value for _, (status, payer), value in rows if billable_status(status) and payer != PLATFORM_PAYER
        )

    async def _level_quantity(self, tenant_id: str, meter: str, start: int, end: int, now: int) -> Decimal:
        cutoff = min(end, now)
        if cutoff <= start:
            return gb_months(0, end - start)
        balance = await self._usage.balance_before(tenant_id=tenant_id, meter=meter, before_us=start)
        deltas = self._usage.deltas(tenant_id=tenant_id, meter=meter, start_us=start, end_us=cutoff)
        integral = await integrate_level(balance, deltas, start, cutoff)
        return gb_months(integral, end - start)

    async def get_plan(self, plan_id: str) -> PricePlan:
        plan = await self._plans.get_plan(plan_id)
        if plan is None:
            raise NotFound(f"price plan {plan_id} not found", reason="PRICE_PLAN_NOT_FOUND")
        return plan

    async def set_plan(self, plan: PricePlan) -> PricePlan:
        """Store the plan. A change takes effect at the start of the next UTC month (the running
        month and every closed one keep the prices they began with); a new plan prices every
        month (nobody was billed on it yet)."""
        plan = normalize_plan(plan)
        exists = await self._plans.get_plan(plan.plan_id) is not None
        await self._plans.put_plan(plan, next_month_start_us(self.now_us()) if exists else 0)
        return plan
