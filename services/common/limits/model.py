"""Limits as plain values, with their protobuf and JSON forms.

`Limits` is partial (any field may be None = inherit); `EffectiveLimits` is complete. The
inheritance chain is: tenant overrides -> the tenant's plan -> the default plan -> DEFAULTS.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import Decimal
from typing import Any

from makoto.metering.v1 import metering_pb2

GIB = 1024**3


@dataclass(frozen=True)
class Rate:
    """A sustained rate (requests per second) with a burst allowance."""

    per_second: float
    burst: int


@dataclass(frozen=True)
class Limits:
    api: Rate | None = None
    reads: Rate | None = None
    writes: Rate | None = None
    llm: Rate | None = None
    llm_tokens_per_minute: int | None = None
    llm_monthly_tokens: int | None = None
    # Decimal in the plan's currency.
    llm_monthly_spend: Decimal | None = None
    max_object_bytes: int | None = None
    storage_quota_bytes: int | None = None

    def over(self, base: Limits) -> Limits:
        """These limits, with unset fields taken from base."""
        return replace(
            base, **{f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        )

    # -- protobuf ----------------------------------------------------------------------------

    @classmethod
    def from_proto(cls, pb: metering_pb2.PlanLimits) -> Limits:
        def rate(name: str) -> Rate | None:
            if not pb.HasField(name):
                return None
            r = getattr(pb, name)
            return Rate(r.requests_per_second, r.burst)

        return cls(
            api=rate("api"),
            reads=rate("reads"),
            writes=rate("writes"),
            llm=rate("llm"),
            llm_tokens_per_minute=pb.llm_tokens_per_minute if pb.HasField("llm_tokens_per_minute") else None,
            llm_monthly_tokens=pb.llm_monthly_tokens if pb.HasField("llm_monthly_tokens") else None,
            llm_monthly_spend=Decimal(pb.llm_monthly_spend) if pb.HasField("llm_monthly_spend") else None,
            max_object_bytes=pb.max_object_bytes if pb.HasField("max_object_bytes") else None,
            storage_quota_bytes=pb.storage_quota_bytes if pb.HasField("storage_quota_bytes") else None,
        )

    def to_proto(self) -> metering_pb2.PlanLimits:
        pb = metering_pb2.PlanLimits()
        for name in ("api", "reads", "writes", "llm"):
            r: Rate | None = getattr(self, name)
            if r is not None:
                getattr(pb, name).CopyFrom(
                    metering_pb2.RateLimit(requests_per_second=r.per_second, burst=r.burst)
                )
        for name in (
            "llm_tokens_per_minute",
            "llm_monthly_tokens",
            "max_object_bytes",
            "storage_quota_bytes",
        ):
            value = getattr(self, name)
            if value is not None:
                setattr(pb, name, value)
        if self.llm_monthly_spend is not None:
            pb.llm_monthly_spend = format(self.llm_monthly_spend, "f")
        return pb

    # -- JSON (stored in the metering database) ----------------------------------------------

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, Rate):
                out[f.name] = {"per_second": value.per_second, "burst": value.burst}
            elif isinstance(value, Decimal):
                out[f.name] = format(value, "f")
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Limits:
        if not data:
            return cls()
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            value = data.get(f.name)
            if value is None:
                continue
            if f.name in ("api", "reads", "writes", "llm"):
                kwargs[f.name] = Rate(float(value["per_second"]), int(value["burst"]))
            elif f.name == "llm_monthly_spend":
                kwargs[f.name] = Decimal(value)
            else:
                kwargs[f.name] = int(value)
        return cls(**kwargs)


# Safe defaults: a tenant on a plan that sets nothing still has finite limits.
DEFAULTS = Limits(
    api=Rate(200.0, 400),
    reads=Rate(200.0, 400),
    writes=Rate(100.0, 200),
    llm=Rate(10.0, 20),
    llm_tokens_per_minute=1_000_000,
    llm_monthly_tokens=50_000_000,
    llm_monthly_spend=Decimal("1000"),
    max_object_bytes=5 * GIB,
    storage_quota_bytes=100 * GIB,
)


@dataclass(frozen=True)
class EffectiveLimits:
    """What a data-plane replica enforces for one tenant (from TenantLimits)."""

    tenant_id: str
    limits: Limits  # complete: every field set
    month: str
    # MeteringService's view when fetched: floors for the shared counters.
    llm_tokens_used: int
    llm_spend_used: Decimal
    storage_bytes_used: int
    prompt_price: Decimal
    completion_price: Decimal

    @classmethod
    def from_proto(cls, pb: metering_pb2.TenantLimits) -> EffectiveLimits:
        return cls(
            tenant_id=pb.tenant_id,
            limits=Limits.from_proto(pb.effective).over(DEFAULTS),
            month=pb.llm_budget.month,
            llm_tokens_used=pb.llm_budget.tokens_used,
            llm_spend_used=Decimal(pb.llm_budget.spend_used or "0"),
            storage_bytes_used=pb.storage_bytes_used,
            prompt_price=Decimal(pb.llm_prompt_token_price or "0"),
            completion_price=Decimal(pb.llm_completion_token_price or "0"),
        )

    @classmethod
    def fallback(cls, tenant_id: str, month: str) -> EffectiveLimits:
        """When MeteringService cannot be asked and nothing is cached: the safe defaults."""
        return cls(tenant_id, DEFAULTS, month, 0, Decimal(0), 0, Decimal(0), Decimal(0))
