"""Provisioning runs as google.longrunning.Operation: GetOperation / ListOperations of a tenant.

`metadata` is a ProvisioningMetadata with every step the run started (name, state, reason,
whether the resource pre-existed), and for an OFFBOARD run its export with a fresh signed
download link while the tenant is OFFBOARDING; `response` is the Tenant once the run SUCCEEDED; `error` is
FAILED_PRECONDITION naming the failed step and its reason when it FAILED. Runs interrupted by a
crash stay `done: false` until the restarted service resumes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from google.longrunning import operations_pb2
from google.protobuf import any_pb2, timestamp_pb2
from google.rpc import code_pb2, status_pb2
from makoto.tenant.v1 import tenant_pb2

from services.common import paging
from services.common.errors import NotFound
from services.tenant import convert
from services.tenant.model import State
from services.tenant.offboarding.erasure import OFFBOARD
from services.tenant.offboarding.export import ExportSummary
from services.tenant.provisioning.journal import OperationRecord, OperationState, SqlJournal, StepRecord
from services.tenant.tenants import TenantManager


class ExportLinks(Protocol):
    """What an OFFBOARD operation shows of its export (services.tenant.offboarding.runner)."""

    def summary(self, tenant_id: str, operation_id: str) -> ExportSummary | None: ...

    def link(self, tenant_id: str, export_id: str) -> tuple[str, int]: ...


_STEP_STATE = {
    "STARTED": tenant_pb2.STEP_STATE_STARTED,
    "DONE": tenant_pb2.STEP_STATE_DONE,
    "FAILED": tenant_pb2.STEP_STATE_FAILED,
    "REMOVED": tenant_pb2.STEP_STATE_REMOVED,
}


def _ts(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


def _pack(message: tenant_pb2.ProvisioningMetadata | tenant_pb2.Tenant) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)
    return out


class OperationReader:
    def __init__(
        self, tenants: TenantManager, journal: SqlJournal, exports: ExportLinks | None = None
    ) -> None:
        self._tenants = tenants
        self._journal = journal
        self._exports = exports

    async def get(self, tenant_id: str, operation_id: str) -> operations_pb2.Operation:
        # A DELETED tenant's operations stay readable (how its offboarding ended).
        await self._tenants.get_any(tenant_id)
        record = await self._journal.operation(operation_id)
        if record is None or record.tenant_id != tenant_id:
            raise NotFound(f"operation {operation_id} not found", reason="OPERATION_NOT_FOUND")
        return await self._to_proto(record, await self._journal.steps(tenant_id))

    async def list(
        self, tenant_id: str, *, page_size: int, page_token: str
    ) -> operations_pb2.ListOperationsResponse:
        await self._tenants.get_any(tenant_id)
        scope = f"operations:{tenant_id}"
        after = paging.decode(page_token, scope)
        size = paging.page_size(page_size)
        records = list(await self._journal.operations_of(tenant_id))
        start = int(after) if after is not None and after.isdigit() else 0
        page = records[start : start + size]
        steps = await self._journal.steps(tenant_id)
        next_token = paging.encode(str(start + size), scope) if start + size < len(records) else ""
        return operations_pb2.ListOperationsResponse(
            operations=[await self._to_proto(r, steps) for r in page], next_page_token=next_token
        )

    async def _to_proto(
        self, record: OperationRecord, steps: Sequence[StepRecord]
    ) -> operations_pb2.Operation:
        own = [s for s in steps if s.operation_id == record.operation_id]
        metadata = tenant_pb2.ProvisioningMetadata(
            tenant_id=record.tenant_id,
            kind=record.kind,
            failed_step=record.failed_step,
            create_time=_ts(record.create_time),
            update_time=_ts(record.update_time),
            steps=[
                tenant_pb2.ProvisioningStep(
                    name=s.step,
                    state=_STEP_STATE[str(s.state)],
                    reason=s.reason,
                    preexisting=s.preexisting,
                    update_time=_ts(s.update_time),
                )
                for s in own
            ],
        )
        tenant = await self._tenants.get_any(record.tenant_id)
        if record.kind == OFFBOARD and self._exports is not None:
            summary = self._exports.summary(record.tenant_id, record.operation_id)
            if summary is not None:
                metadata.export.CopyFrom(
                    tenant_pb2.ExportInfo(
                        export_id=summary.export_id,
                        size_bytes=summary.size_bytes,
                        sha256=summary.sha256,
                        object_count=summary.object_count,
                        item_count=summary.item_count,
                    )
                )
                if tenant.state == State.OFFBOARDING:
                    uri, expires = self._exports.link(record.tenant_id, summary.export_id)
                    metadata.export.download_uri = uri
                    metadata.export.download_expire_time.FromSeconds(expires)
        operation = operations_pb2.Operation(
            name=f"tenants/{record.tenant_id}/operations/{record.operation_id}",
            done=record.state != OperationState.RUNNING,
            metadata=_pack(metadata),
        )
        if record.state == OperationState.SUCCEEDED:
            operation.response.CopyFrom(_pack(convert.tenant_to_proto(tenant)))
        elif record.state == OperationState.FAILED:
            operation.error.CopyFrom(
                status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=record.reason)
            )
        return operation
