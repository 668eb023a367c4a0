"""Ports of MeteringService: what the domain needs from a usage store, a price-plan store and
whatever tells a tenant's price plan. Adapters live in adapters/ (SQL) and plans.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from services.common.limits.model import Limits
from services.common.metering_client import MeterEvent
from services.metering.model import PricePlan
from services.metering.usage_columns import UsageColumns

# (bucket start in µs or None for the whole range, group values in group_by order, sum)
AggregateRow = tuple[int | None, tuple[str, ...], int]


class UsageStore(Protocol):
    async def insert_events(self, events: Sequence[MeterEvent]) -> int:
        """Insert-or-ignore by event id (also within `events`); returns how many were new."""
        ...

    async def insert_columns(self, columns: UsageColumns) -> int:
        """The same for usage events (no audit events) already in columns."""
        ...

    async def aggregate(
        self,
        *,
        tenant_id: str,
        meter: str,
        start_us: int,
        end_us: int,
        bucket_us: int | None,
        group_by: Sequence[str],
        limit: int,
    ) -> list[AggregateRow]:
        """Sum of values in [start_us, end_us) per UTC-aligned bucket (floor(time / bucket_us))
        and per dimension values (a missing dimension groups as "")."""
        ...

    async def totals(
        self, *, tenant_id: str, meters: Sequence[str], start_us: int, end_us: int
    ) -> dict[str, int]:
        """Sum of values per meter in [start_us, end_us)."""
        ...

    async def usage_span(self, tenant_id: str) -> tuple[int, int] | None:
        """Earliest and latest event time of the tenant, if it has any usage."""
        ...

    async def erase_tenant(self, tenant_id: str, invoices: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Keep these (month, invoice JSON) invoices, erase the tenant's usage and limit overrides,
        drop its later events; all or nothing. Returns how many usage events were erased."""
        ...

    async def kept_invoice(self, tenant_id: str, month: str) -> dict[str, Any] | None: ...

    async def kept_months(self, tenant_id: str) -> list[str]: ...

    async def balance_before(self, *, tenant_id: str, meter: str, before_us: int) -> int:
        """Sum of all values earlier than before_us (the balance a delta meter carries in)."""
        ...

    def deltas(
        self, *, tenant_id: str, meter: str, start_us: int, end_us: int
    ) -> AsyncIterator[tuple[int, int]]:
        """(time_us, summed value at that instant) in [start_us, end_us), ascending, streamed."""
        ...


class PricePlanStore(Protocol):
    async def get_plan(self, plan_id: str) -> PricePlan | None: ...

    async def put_plan(self, plan: PricePlan, effective_from_us: int) -> None:
        """Create or replace the plan's latest definition, and record it as the version that
        prices usage from effective_from_us on (replacing a version with the same start)."""
        ...

    async def plan_in_force(self, plan_id: str, at_us: int) -> PricePlan | None:
        """The version pricing the instant at_us: the latest that started at or before it, else
        (a plan created later) its first version. None if the plan does not exist."""
        ...


class TenantLimitsStore(Protocol):
    async def get_overrides(self, tenant_id: str) -> Limits:
        """The tenant's overrides (empty Limits when none)."""
        ...

    async def put_overrides(self, tenant_id: str, limits: Limits) -> None:
        """Replace the tenant's overrides (empty Limits removes them)."""
        ...


class PlanResolver(Protocol):
    """Which price plan a tenant is billed on."""

    async def plan_id_for(self, tenant_id: str) -> str: ...


class TenantGate(Protocol):
    """Whether a tenant may use the platform now (TenantDirectory in production)."""

    async def require_active(self, tenant_id: str) -> object:
        """PermissionDenied if suspended, NotFound if unknown or deleted."""
        ...
