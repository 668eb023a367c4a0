import datetime

from buf.validate import validate_pb2 as _validate_pb2
from google.api import annotations_pb2 as _annotations_pb2
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from makoto.api.v1 import access_pb2 as _access_pb2
from makoto.api.v1 import rules_pb2 as _rules_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UsageWindow(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_WINDOW_UNSPECIFIED: _ClassVar[UsageWindow]
    USAGE_WINDOW_HOUR: _ClassVar[UsageWindow]
    USAGE_WINDOW_DAY: _ClassVar[UsageWindow]
    USAGE_WINDOW_MONTH: _ClassVar[UsageWindow]
USAGE_WINDOW_UNSPECIFIED: UsageWindow
USAGE_WINDOW_HOUR: UsageWindow
USAGE_WINDOW_DAY: UsageWindow
USAGE_WINDOW_MONTH: UsageWindow

class UsageEvent(_message.Message):
    __slots__ = ("id", "source", "type", "subject", "time", "value", "dimensions")
    class DimensionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    source: str
    type: str
    subject: str
    time: _timestamp_pb2.Timestamp
    value: int
    dimensions: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., source: _Optional[str] = ..., type: _Optional[str] = ..., subject: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[int] = ..., dimensions: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RecordUsageRequest(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[UsageEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[UsageEvent, _Mapping]]] = ...) -> None: ...

class RecordUsageResponse(_message.Message):
    __slots__ = ("accepted", "duplicates")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ...) -> None: ...

class QueryUsageRequest(_message.Message):
    __slots__ = ("tenant_id", "meter", "start_time", "end_time", "window", "group_by", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    meter: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    window: UsageWindow
    group_by: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., meter: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window: _Optional[_Union[UsageWindow, str]] = ..., group_by: _Optional[_Iterable[str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("window_start", "window_end", "group", "value")
    class GroupEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WINDOW_START_FIELD_NUMBER: _ClassVar[int]
    WINDOW_END_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    window_start: _timestamp_pb2.Timestamp
    window_end: _timestamp_pb2.Timestamp
    group: _containers.ScalarMap[str, str]
    value: int
    def __init__(self, window_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., window_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group: _Optional[_Mapping[str, str]] = ..., value: _Optional[int] = ...) -> None: ...

class QueryUsageResponse(_message.Message):
    __slots__ = ("meter", "rows", "next_page_token")
    METER_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    meter: str
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    next_page_token: str
    def __init__(self, meter: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetInvoiceRequest(_message.Message):
    __slots__ = ("tenant_id", "month")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    month: str
    def __init__(self, tenant_id: _Optional[str] = ..., month: _Optional[str] = ...) -> None: ...

class InvoiceLineItem(_message.Message):
    __slots__ = ("meter", "quantity", "unit", "unit_price", "amount")
    METER_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    meter: str
    quantity: str
    unit: str
    unit_price: str
    amount: str
    def __init__(self, meter: _Optional[str] = ..., quantity: _Optional[str] = ..., unit: _Optional[str] = ..., unit_price: _Optional[str] = ..., amount: _Optional[str] = ...) -> None: ...

class Invoice(_message.Message):
    __slots__ = ("tenant_id", "month", "currency", "price_plan_id", "line_items", "total", "final")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PRICE_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    LINE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    month: str
    currency: str
    price_plan_id: str
    line_items: _containers.RepeatedCompositeFieldContainer[InvoiceLineItem]
    total: str
    final: bool
    def __init__(self, tenant_id: _Optional[str] = ..., month: _Optional[str] = ..., currency: _Optional[str] = ..., price_plan_id: _Optional[str] = ..., line_items: _Optional[_Iterable[_Union[InvoiceLineItem, _Mapping]]] = ..., total: _Optional[str] = ..., final: _Optional[bool] = ...) -> None: ...

class MeterPrice(_message.Message):
    __slots__ = ("meter", "unit_price", "unit")
    METER_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    meter: str
    unit_price: str
    unit: str
    def __init__(self, meter: _Optional[str] = ..., unit_price: _Optional[str] = ..., unit: _Optional[str] = ...) -> None: ...

class PricePlan(_message.Message):
    __slots__ = ("plan_id", "currency", "prices", "limits")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    currency: str
    prices: _containers.RepeatedCompositeFieldContainer[MeterPrice]
    limits: PlanLimits
    def __init__(self, plan_id: _Optional[str] = ..., currency: _Optional[str] = ..., prices: _Optional[_Iterable[_Union[MeterPrice, _Mapping]]] = ..., limits: _Optional[_Union[PlanLimits, _Mapping]] = ...) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("requests_per_second", "burst")
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    requests_per_second: float
    burst: int
    def __init__(self, requests_per_second: _Optional[float] = ..., burst: _Optional[int] = ...) -> None: ...

class PlanLimits(_message.Message):
    __slots__ = ("api", "reads", "writes", "llm", "llm_tokens_per_minute", "llm_monthly_tokens", "llm_monthly_spend", "max_object_bytes", "storage_quota_bytes")
    API_FIELD_NUMBER: _ClassVar[int]
    READS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    LLM_FIELD_NUMBER: _ClassVar[int]
    LLM_TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    LLM_MONTHLY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LLM_MONTHLY_SPEND_FIELD_NUMBER: _ClassVar[int]
    MAX_OBJECT_BYTES_FIELD_NUMBER: _ClassVar[int]
    STORAGE_QUOTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    api: RateLimit
    reads: RateLimit
    writes: RateLimit
    llm: RateLimit
    llm_tokens_per_minute: int
    llm_monthly_tokens: int
    llm_monthly_spend: str
    max_object_bytes: int
    storage_quota_bytes: int
    def __init__(self, api: _Optional[_Union[RateLimit, _Mapping]] = ..., reads: _Optional[_Union[RateLimit, _Mapping]] = ..., writes: _Optional[_Union[RateLimit, _Mapping]] = ..., llm: _Optional[_Union[RateLimit, _Mapping]] = ..., llm_tokens_per_minute: _Optional[int] = ..., llm_monthly_tokens: _Optional[int] = ..., llm_monthly_spend: _Optional[str] = ..., max_object_bytes: _Optional[int] = ..., storage_quota_bytes: _Optional[int] = ...) -> None: ...

class GetTenantLimitsRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class SetTenantLimitsRequest(_message.Message):
    __slots__ = ("tenant_id", "overrides")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    overrides: PlanLimits
    def __init__(self, tenant_id: _Optional[str] = ..., overrides: _Optional[_Union[PlanLimits, _Mapping]] = ...) -> None: ...

class LlmBudgetStatus(_message.Message):
    __slots__ = ("month", "tokens_used", "tokens_remaining", "spend_used", "spend_remaining")
    MONTH_FIELD_NUMBER: _ClassVar[int]
    TOKENS_USED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_REMAINING_FIELD_NUMBER: _ClassVar[int]
    SPEND_USED_FIELD_NUMBER: _ClassVar[int]
    SPEND_REMAINING_FIELD_NUMBER: _ClassVar[int]
    month: str
    tokens_used: int
    tokens_remaining: int
    spend_used: str
    spend_remaining: str
    def __init__(self, month: _Optional[str] = ..., tokens_used: _Optional[int] = ..., tokens_remaining: _Optional[int] = ..., spend_used: _Optional[str] = ..., spend_remaining: _Optional[str] = ...) -> None: ...

class TenantLimits(_message.Message):
    __slots__ = ("tenant_id", "price_plan_id", "currency", "effective", "overrides", "llm_budget", "storage_bytes_used", "storage_bytes_remaining", "llm_prompt_token_price", "llm_completion_token_price")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    LLM_BUDGET_FIELD_NUMBER: _ClassVar[int]
    STORAGE_BYTES_USED_FIELD_NUMBER: _ClassVar[int]
    STORAGE_BYTES_REMAINING_FIELD_NUMBER: _ClassVar[int]
    LLM_PROMPT_TOKEN_PRICE_FIELD_NUMBER: _ClassVar[int]
    LLM_COMPLETION_TOKEN_PRICE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    price_plan_id: str
    currency: str
    effective: PlanLimits
    overrides: PlanLimits
    llm_budget: LlmBudgetStatus
    storage_bytes_used: int
    storage_bytes_remaining: int
    llm_prompt_token_price: str
    llm_completion_token_price: str
    def __init__(self, tenant_id: _Optional[str] = ..., price_plan_id: _Optional[str] = ..., currency: _Optional[str] = ..., effective: _Optional[_Union[PlanLimits, _Mapping]] = ..., overrides: _Optional[_Union[PlanLimits, _Mapping]] = ..., llm_budget: _Optional[_Union[LlmBudgetStatus, _Mapping]] = ..., storage_bytes_used: _Optional[int] = ..., storage_bytes_remaining: _Optional[int] = ..., llm_prompt_token_price: _Optional[str] = ..., llm_completion_token_price: _Optional[str] = ...) -> None: ...

class GetPricePlanRequest(_message.Message):
    __slots__ = ("plan_id",)
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    def __init__(self, plan_id: _Optional[str] = ...) -> None: ...

class SetPricePlanRequest(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: PricePlan
    def __init__(self, plan: _Optional[_Union[PricePlan, _Mapping]] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("seq", "event_id", "time_us", "source", "principal", "role", "method", "resource", "outcome", "api_key_id", "prev_hash", "hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_US_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    event_id: str
    time_us: int
    source: str
    principal: str
    role: str
    method: str
    resource: str
    outcome: str
    api_key_id: str
    prev_hash: str
    hash: str
    def __init__(self, seq: _Optional[int] = ..., event_id: _Optional[str] = ..., time_us: _Optional[int] = ..., source: _Optional[str] = ..., principal: _Optional[str] = ..., role: _Optional[str] = ..., method: _Optional[str] = ..., resource: _Optional[str] = ..., outcome: _Optional[str] = ..., api_key_id: _Optional[str] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class ListAuditRecordsRequest(_message.Message):
    __slots__ = ("tenant_id", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPlatformAuditRecordsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAuditRecordsResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class EraseTenantUsageRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class EraseTenantUsageResponse(_message.Message):
    __slots__ = ("invoices_kept", "usage_events_erased")
    INVOICES_KEPT_FIELD_NUMBER: _ClassVar[int]
    USAGE_EVENTS_ERASED_FIELD_NUMBER: _ClassVar[int]
    invoices_kept: _containers.RepeatedScalarFieldContainer[str]
    usage_events_erased: int
    def __init__(self, invoices_kept: _Optional[_Iterable[str]] = ..., usage_events_erased: _Optional[int] = ...) -> None: ...
