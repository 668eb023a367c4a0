"""The port every service uses to report usage (meters) to MeteringService."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import NotRequired, Protocol, TypedDict, Unpack, runtime_checkable

from services.common.errors import MakotoError

# Meter names (the CloudEvents `type` of a usage event).
API_CALLS = "api_calls"
STORAGE_BYTES = "storage_bytes"
LLM_PROMPT_TOKENS = "llm_prompt_tokens"
LLM_COMPLETION_TOKENS = "llm_completion_tokens"
# One event per tenant, month, budget kind and threshold crossed (80 %, 100 %); not priced.
LLM_BUDGET_ALERTS = "llm_budget_alerts"
# One event per audited decision (who called what, the outcome); chained into the tenant's
# audit log by MeteringService, never priced or summed.
AUDIT = "audit"
# The audit chain of decisions that name no tenant (operator calls such as ListTenants or
# SetPricePlan): its events carry this subject, a tenant id no tenant may take.
PLATFORM_AUDIT_CHAIN = "platform"

# Dimension `payer` of an event the platform pays for (operator calls); absent: the tenant pays.
PAYER = "payer"
PLATFORM_PAYER = "platform"


class UsageFields(TypedDict):
    """What a caller says about one usage event (UsageRecorder.record's keywords)."""

    meter: str
    tenant_id: str
    value: int
    dimensions: NotRequired[Mapping[str, str] | None]
    event_id: NotRequired[str | None]
    time: NotRequired[datetime | None]


class UsageRecorder(Protocol):
    """Records usage events durably; delivery to MeteringService is at-least-once and
    idempotent by event id (an id is assigned when the caller does not give one)."""

    async def start(self) -> None: ...

    async def record(self, **fields: Unpack[UsageFields]) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class DurabilityGate(Protocol):
    """A recorder that can tell, before a call does any work, that its usage could not be made
    durable now (spool unwritable or full). The interceptor refuses such calls up front and the
    server reports NOT_SERVING while it says so."""

    def refusal(self) -> MakotoError | None: ...
