"""gRPC face of MeteringService: protobuf <-> domain, nothing else. Requests arrive already
authenticated, tenant-checked and validated against the proto's rules by the interceptor, except
RecordUsage, whose handler checks the same rules on its columnar fast path (issue 8)."""

from __future__ import annotations

from decimal import Decimal

import grpc
from google.protobuf import timestamp_pb2
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc

from services.common import paging
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.identity import maybe_principal
from services.common.interceptor import validate_message, validated_by_handler
from services.common.limits.model import Limits
from services.common.metering_client import MeterEvent
from services.common.policy import TENANT_ROLES
from services.common.usage import PLATFORM_AUDIT_CHAIN
from services.metering.adapters.sql_audit import SqlAuditLog
from services.metering.limits import TenantLimitsService
from services.metering.metering import Metering
from services.metering.model import Invoice, MeterPrice, PricePlan, TenantLimitsView, Window
from services.metering.periods import MAX_US, MIN_US, from_us, month_start_us
from services.metering.ports import TenantGate
from services.metering.pricing import fmt, parse_price
from services.metering.usage_columns import columns_from_proto
from services.metering.usage_query import UsageQuery

validated_by_handler(metering_pb2.RecordUsageRequest)

_WINDOWS = {
    metering_pb2.USAGE_WINDOW_UNSPECIFIED: Window.WHOLE,
    metering_pb2.USAGE_WINDOW_HOUR: Window.HOUR,
    metering_pb2.USAGE_WINDOW_DAY: Window.DAY,
    metering_pb2.USAGE_WINDOW_MONTH: Window.MONTH,
}


def _ts_to_us(ts: timestamp_pb2.Timestamp, field: str) -> int:
    us = ts.seconds * 1_000_000 + ts.nanos // 1000
    if not MIN_US <= us <= MAX_US:
        raise InvalidArgument(
            f"{field} out of range", field_violations=[(field, "must be 1970-01-01..9999-01-01")]
        )
    return us


def _us_to_ts(us: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(from_us(us))
    return ts


def plan_to_proto(plan: PricePlan) -> metering_pb2.PricePlan:
    return metering_pb2.PricePlan(
        plan_id=plan.plan_id,
        currency=plan.currency,
        prices=[
            metering_pb2.MeterPrice(meter=p.meter, unit_price=fmt(p.unit_price), unit=p.unit)
            for p in plan.prices
        ],
        limits=plan.limits.to_proto() if plan.limits.to_json() else None,
    )


def limits_to_proto(view: TenantLimitsView) -> metering_pb2.TenantLimits:
    e = view.effective
    budget = metering_pb2.LlmBudgetStatus(
        month=view.month, tokens_used=view.llm_tokens_used, spend_used=fmt(view.llm_spend_used)
    )
    if e.llm_monthly_tokens is not None:
        budget.tokens_remaining = max(e.llm_monthly_tokens - view.llm_tokens_used, 0)
    if e.llm_monthly_spend is not None:
        budget.spend_remaining = fmt(max(e.llm_monthly_spend - view.llm_spend_used, Decimal(0)))
    quota = e.storage_quota_bytes or 0
    return metering_pb2.TenantLimits(
        tenant_id=view.tenant_id,
        price_plan_id=view.plan_id,
        currency=view.currency,
        effective=e.to_proto(),
        overrides=view.overrides.to_proto(),
        llm_budget=budget,
        storage_bytes_used=view.storage_bytes_used,
        storage_bytes_remaining=max(quota - view.storage_bytes_used, 0),
        llm_prompt_token_price=fmt(view.prompt_price),
        llm_completion_token_price=fmt(view.completion_price),
    )


def invoice_to_proto(invoice: Invoice) -> metering_pb2.Invoice:
    return metering_pb2.Invoice(
        tenant_id=invoice.tenant_id,
        month=invoice.month,
        currency=invoice.currency,
        price_plan_id=invoice.price_plan_id,
        line_items=[
            metering_pb2.InvoiceLineItem(
                meter=line.meter,
                quantity=fmt(line.quantity),
                unit=line.unit,
                unit_price=fmt(line.unit_price),
                amount=fmt(line.amount),
            )
            for line in invoice.lines
        ],
        total=fmt(invoice.total),
        final=invoice.final,
    )


class MeteringServicer(metering_pb2_grpc.MeteringServiceServicer):
    """tenants: the directory that says whether a tenant may still use the platform. A tenant's
    own token reads usage, invoices and limits only while the tenant is ACTIVE (suspended: 403,
    deleted: 404); a platform-admin reads any tenant's, deleted ones included (final invoices)."""

    def __init__(
        self,
        metering: Metering,
        limits: TenantLimitsService,
        tenants: TenantGate | None = None,
        audit: SqlAuditLog | None = None,
    ) -> None:
        self._metering = metering
        self._limits = limits
        self._tenants = tenants
        self._audit = audit

    async def _tenant_may_read(self, tenant_id: str) -> None:
        principal = maybe_principal()
        if self._tenants is not None and principal is not None and principal.role in TENANT_ROLES:
            await self._tenants.require_active(tenant_id)

    async def RecordUsage(
        self, request: metering_pb2.RecordUsageRequest, context: grpc.aio.ServicerContext
    ) -> metering_pb2.RecordUsageResponse:
        # The interceptor leaves this request's rules to us (validated_by_handler below): the
        # columnar fast path checks them on the arrays it builds anyway; whatever it does not
        # accept, protovalidate judges as for every other request, with the same errors.
        columns = columns_from_proto(request.events)
        if columns is not None:
            accepted, duplicates = await self._metering.record_columns(columns)
            return metering_pb2.RecordUsageResponse(accepted=accepted, duplicates=duplicates)
        validate_message(request)
        for i, e in enumerate(request.events):
            _ts_to_us(e.time, f"events[{i}].time")  # range check before any conversion
        events = [MeterEvent.from_proto(e) for e in request.events]
        accepted, duplicates = await self._metering.record(events)
        return metering_pb2.RecordUsageResponse(accepted=accepted, duplicates=duplicates)

    async def QueryUsage(
        self, request: metering_pb2.QueryUsageRequest, context: grpc.aio.ServicerContext
    ) -> metering_pb2.QueryUsageResponse:
        await self._tenant_may_read(request.tenant_id)
        now = self._metering.now_us()
        end = _ts_to_us(request.end_time, "end_time") if request.HasField("end_time") else now
        if request.HasField("start_time"):
            start = _ts_to_us(request.start_time, "start_time")
        else:
            start = month_start_us(now)
        query = UsageQuery(
            tenant_id=request.tenant_id,
            meter=request.meter,
            start_us=start,
            end_us=end,
            window=_WINDOWS[request.window],
            group_by=tuple(request.group_by),
        )
        rows = await self._metering.query(query)
        # The token binds the query as asked (an unset end is "now" on every page).
        scope = "\x00".join(
            [
                request.tenant_id,
                request.meter,
                request.start_time.SerializeToString().hex() if request.HasField("start_time") else "",
                request.end_time.SerializeToString().hex() if request.HasField("end_time") else "",
                str(request.window),
                *request.group_by,
            ]
        )
        # Default page: the whole answer up to the maximum, as before pagination existed.
        page, next_token = paging.offset_page(
            rows, request.page_size, request.page_token, scope, default=paging.MAX_PAGE_SIZE
        )
        return metering_pb2.QueryUsageResponse(
            meter=request.meter,
            next_page_token=next_token,
            rows=[
                metering_pb2.UsageRow(
                    window_start=_us_to_ts(row.window_start_us),
                    window_end=_us_to_ts(row.window_end_us),
                    group=dict(row.group),
                    value=row.value,
                )
                for row in page
            ],
        )

    async def EraseTenantUsage(
        self, request: metering_pb2.EraseTenantUsageRequest, context: grpc.aio.ServicerContext
    ) -> metering_pb2.EraseTenantUsageResponse:
        months, erased = await self._metering.erase_tenant(request.tenant_id)
        return metering_pb2.EraseTenantUsageResponse(invoices_kept=months, usage_events_erased=erased)

    async def GetInvoice(
        self, request: metering_pb2.GetInvoiceRequest, context: grpc.aio.ServicerContext
    ) -> metering_pb2.Invoice:
        await self._tenant_may_read(request.tenant_id)
        return invoice_to_proto(await self._metering.invoice(request.tenant_id, request.month))

    async def GetPricePlan(
        self, request: metering_pb2.GetPricePlanRequest, context: grpc.aio.ServicerContext
    ) -> metering_pb2.PricePlan:
        return plan_to_proto(await self._metering.get_plan(request.plan_id))

    async def SetPricePlan(
        self, request: metering_pb2.SetPricePlanRequest, context: grpc.aio.ServicerContext
    ) -> metering_pb2.PricePlan:
        plan = request.plan
        prices = tuple(
            MeterPrice(
                meter=p.meter,
                unit_price=parse_price(p.unit_price, f"plan.prices[{i}].unit_price"),
                unit=p.unit,
            )
            for i, p in enumerate(plan.prices)
        )
        stored = await self._metering.set_plan(
            PricePlan(
                plan_id=plan.plan_id,
                currency=plan.currency,
                prices=prices,
                limits=Limits.from_proto(plan.limits),
            )
        )
        return plan_to_proto(stored)

    async def GetTenantLimits(
        self, request: metering_pb2.GetTenantLimitsRequest, context: grpc.aio.ServicerContext
    ) -> metering_pb2.TenantLimits:
        await self._tenant_may_read(request.tenant_id)
        return limits_to_proto(await self._limits.view(request.tenant_id))

    async def SetTenantLimits(
        self, request: metering_pb2.SetTenantLimitsRequest, context: grpc.aio.ServicerContext
    ) -> metering_pb2.TenantLimits:
        overrides = Limits.from_proto(request.overrides)
        return limits_to_proto(await self._limits.set_overrides(request.tenant_id, overrides))

    async def ListAuditRecords(
        self, request: metering_pb2.ListAuditRecordsRequest, context: grpc.aio.ServicerContext
    ) -> metering_pb2.ListAuditRecordsResponse:
        await self._tenant_may_read(request.tenant_id)
        return await self._audit_page(request.tenant_id, request.page_size, request.page_token)

    async def ListPlatformAuditRecords(
        self, request: metering_pb2.ListPlatformAuditRecordsRequest, context: grpc.aio.ServicerContext
    ) -> metering_pb2.ListAuditRecordsResponse:
        return await self._audit_page(PLATFORM_AUDIT_CHAIN, request.page_size, request.page_token)

    async def _audit_page(
        self, chain: str, page_size: int, page_token: str
    ) -> metering_pb2.ListAuditRecordsResponse:
        if self._audit is None:
            raise FailedPrecondition("this MeteringService keeps no audit log", reason="AUDIT_UNAVAILABLE")
        size = page_size or 100
        after = int(page_token or 0)
        rows = await self._audit.records(chain, after_seq=after, limit=size + 1)
        page = rows[:size]
        return metering_pb2.ListAuditRecordsResponse(
            records=[
                metering_pb2.AuditRecord(**{k: v for k, v in r.items() if k != "tenant_id"}) for r in page
            ],
            next_page_token=str(page[-1]["seq"]) if len(rows) > size else "",
        )
