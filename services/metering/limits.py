"""Tenants' limits as MeteringService answers them: the effective limits (tenant overrides ->
plan -> default plan -> platform defaults) and where the tenant stands this month.

Usage comes from the durable store, raised to the live shared counters that the LLM and
storage services keep in Redis (they see a call the moment it ends; the store sees it after
the spool delivered it)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

from services.common.errors import FailedPrecondition
from services.common.limits.counters import SharedCounters
from services.common.limits.keys import budget_keys, from_nanos, stored_bytes_key, to_nanos
from services.common.limits.model import DEFAULTS, Limits
from services.common.usage import LLM_COMPLETION_TOKENS, LLM_PROMPT_TOKENS, STORAGE_BYTES
from services.metering.model import TenantLimitsView
from services.metering.periods import Month, to_us
from services.metering.ports import PlanResolver, PricePlanStore, TenantLimitsStore, UsageStore
from services.metering.pricing import DEFAULT_PLAN_ID


class TenantLimitsService:
    def __init__(
        self,
        usage: UsageStore,
        plans: PricePlanStore,
        overrides: TenantLimitsStore,
        resolver: PlanResolver,
        *,
        live: SharedCounters | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._usage = usage
        self._plans = plans
        self._overrides = overrides
        self._resolver = resolver
        self._live = live
        self._clock = clock

    def attach_live(self, live: SharedCounters) -> None:
        self._live = live

    async def view(self, tenant_id: str) -> TenantLimitsView:
        plan_id = await self._resolver.plan_id_for(tenant_id)
        plan = await self._plans.get_plan(plan_id)
        if plan is None:
            raise FailedPrecondition(
                f"price plan {plan_id} of tenant {tenant_id} does not exist", reason="PRICE_PLAN_MISSING"
            )
        default = plan if plan_id == DEFAULT_PLAN_ID else await self._plans.get_plan(DEFAULT_PLAN_ID)
        base = DEFAULTS if default is None else default.limits.over(DEFAULTS)
        overrides = await self._overrides.get_overrides(tenant_id)
        effective = overrides.over(plan.limits.over(base))

        now = self._clock()
        month = Month.parse(now.strftime("%Y-%m"))
        totals = await self._usage.totals(
            tenant_id=tenant_id,
            meters=[LLM_PROMPT_TOKENS, LLM_COMPLETION_TOKENS],
            start_us=month.start_us,
            end_us=month.end_us,
        )
        prompt_price = _unit_price(plan.price_of(LLM_PROMPT_TOKENS))
        completion_price = _unit_price(plan.price_of(LLM_COMPLETION_TOKENS))
        prompt, completion = totals.get(LLM_PROMPT_TOKENS, 0), totals.get(LLM_COMPLETION_TOKENS, 0)
        tokens = prompt + completion
        spend_nanos = to_nanos(prompt * prompt_price + completion * completion_price)
        stored = await self._usage.balance_before(
            tenant_id=tenant_id, meter=STORAGE_BYTES, before_us=to_us(now) + 1
        )
        if self._live is not None:
            tokens_key, nanos_key = budget_keys(self._live, tenant_id, str(month))
            live_tokens, live_nanos, live_stored = await self._live.get(
                [tokens_key, nanos_key, stored_bytes_key(self._live, tenant_id)]
            )
            tokens, spend_nanos = max(tokens, live_tokens), max(spend_nanos, live_nanos)
            stored = max(stored, live_stored)
        return TenantLimitsView(
            tenant_id=tenant_id,
            plan_id=plan.plan_id,
            currency=plan.currency,
            effective=effective,
            overrides=overrides,
            month=str(month),
            llm_tokens_used=tokens,
            llm_spend_used=from_nanos(spend_nanos),
            storage_bytes_used=max(stored, 0),
            prompt_price=prompt_price,
            completion_price=completion_price,
        )

    async def set_overrides(self, tenant_id: str, overrides: Limits) -> TenantLimitsView:
        await self._overrides.put_overrides(tenant_id, overrides)
        return await self.view(tenant_id)


def _unit_price(price: object) -> Decimal:
    unit_price = getattr(price, "unit_price", None)
    return unit_price if isinstance(unit_price, Decimal) else Decimal(0)
