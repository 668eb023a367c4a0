"""Test helpers for limits: a MeteringService stand-in answering TenantLimits from a table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from makoto.metering.v1 import metering_pb2

from services.common.config import MeshSettings
from services.common.limits.model import DEFAULTS, Limits
from services.common.limits.wiring import LimitsParts, build_limits

PRICE = Decimal("0.00002")


@dataclass
class FixedLimits:
    """Per-tenant limits (over DEFAULTS) and MeteringService's view of usage, as a fetch."""

    table: dict[str, Limits] = field(default_factory=dict)
    tokens_used: dict[str, int] = field(default_factory=dict)
    calls: int = 0

    async def __call__(self, tenant_id: str) -> metering_pb2.TenantLimits:
        self.calls += 1
        effective = self.table.get(tenant_id, Limits()).over(DEFAULTS)
        used = self.tokens_used.get(tenant_id, 0)
        return metering_pb2.TenantLimits(
            tenant_id=tenant_id,
            price_plan_id="default",
            currency="USD",
            effective=effective.to_proto(),
            llm_budget=metering_pb2.LlmBudgetStatus(
                month=datetime.now(UTC).strftime("%Y-%m"),
                tokens_used=used,
                spend_used=format(used * PRICE, "f"),
            ),
            llm_prompt_token_price=str(PRICE),
            llm_completion_token_price=str(PRICE),
        )


def fixed_limits_parts(
    settings: MeshSettings, fixed: FixedLimits, *, ttl_seconds: float = 0.0
) -> LimitsParts:
    """Limits parts on the machine's Redis (settings' own key prefix) answering from `fixed`;
    ttl 0: every call sees the table as it is now."""
    settings = settings.model_copy(update={"limits_cache_ttl_seconds": ttl_seconds})
    return build_limits(settings, "test", fetch=fixed)
