"""Real test doubles for the LLM suite: an in-memory UsageRecorder and a fixed tenant directory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import grpc
from google.rpc import error_details_pb2
from makoto.tenant.v1 import directory_pb2, tenant_pb2

from services.common.errors import FailedPrecondition, NotFound, PermissionDenied, status_details
from services.common.usage import AUDIT, LLM_COMPLETION_TOKENS, LLM_PROMPT_TOKENS
from services.llm.simulator import SIMULATOR_KEY_REF


@dataclass(frozen=True)
class Event:
    meter: str
    tenant_id: str
    value: int
    dimensions: Mapping[str, str]


@dataclass
class MemoryRecorder:
    """A UsageRecorder that keeps events in a list."""

    events: list[Event] = field(default_factory=list)
    audit: list[dict[str, str]] = field(default_factory=list)
    started: bool = False
    closed: bool = False

    async def start(self) -> None:
        self.started = True

    async def record(
        self,
        *,
        meter: str,
        tenant_id: str,
        value: int,
        dimensions: Mapping[str, str] | None = None,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> None:
        if meter == AUDIT:  # audit events are kept apart: tests count usage in `events`
            self.audit.append({"tenant": tenant_id, **(dimensions or {})})
            return
        self.events.append(Event(meter, tenant_id, value, dict(dimensions or {})))

    def tokens(self, tenant_id: str) -> list[Event]:
        return [
            e
            for e in self.events
            if e.tenant_id == tenant_id and e.meter in (LLM_PROMPT_TOKENS, LLM_COMPLETION_TOKENS)
        ]

    def total(self, tenant_id: str, meter: str) -> int:
        return sum(e.value for e in self.events if e.tenant_id == tenant_id and e.meter == meter)

    async def close(self) -> None:
        self.closed = True


class FixedTenants:
    """A TenantResolver over fixed answers, with TenantDirectory.require_active's semantics.
    Every put() gives the tenant a new etag, as TenantService does when bindings change."""

    def __init__(self) -> None:
        self._answers: dict[str, directory_pb2.ResolveTenantResponse] = {}
        self._version = 0

    def put(
        self,
        tenant_id: str,
        llm: tenant_pb2.LlmBinding,
        state: tenant_pb2.TenantState = tenant_pb2.TENANT_STATE_ACTIVE,
    ) -> None:
        self._version += 1
        self._answers[tenant_id] = directory_pb2.ResolveTenantResponse(
            tenant_id=tenant_id,
            state=state,
            bindings=tenant_pb2.TenantBindings(llm=llm),
            etag=f"v{self._version}",
        )

    async def require_active(self, tenant_id: str) -> directory_pb2.ResolveTenantResponse:
        answer = self._answers.get(tenant_id)
        if answer is None:
            raise NotFound(f"tenant {tenant_id} not found", reason="TENANT_NOT_FOUND")
        if answer.state == tenant_pb2.TENANT_STATE_ACTIVE:
            return answer
        if answer.state == tenant_pb2.TENANT_STATE_SUSPENDED:
            raise PermissionDenied(f"tenant {tenant_id} is suspended", reason="TENANT_SUSPENDED")
        raise FailedPrecondition(f"tenant {tenant_id} is not active", reason="TENANT_NOT_ACTIVE")


def llm_binding(**overrides: object) -> tenant_pb2.LlmBinding:
    """The default binding of a new tenant (OpenAI, endpoint "" = the simulator), with overrides."""
    values: dict[str, object] = {
        "provider": tenant_pb2.LLM_PROVIDER_OPENAI,
        "endpoint": "",
        "chat_model": "sim-chat",
        "embedding_model": "sim-embed",
        "image_model": "sim-image",
        "api_key_secret_ref": SIMULATOR_KEY_REF,
    }
    values.update(overrides)
    return tenant_pb2.LlmBinding(**values)  # type: ignore[arg-type]


def error_info(
    err: grpc.aio.AioRpcError,
) -> tuple[error_details_pb2.ErrorInfo | None, error_details_pb2.RetryInfo | None]:
    status = status_details(err)
    info = retry = None
    for detail in status.details if status is not None else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
    return info, retry
