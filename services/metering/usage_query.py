"""QueryUsage: sums of one meter per window and per group of dimension values.

Windows are aligned to UTC hours, days or calendar months and clipped to the queried range, so
a row's [window_start, window_end) is exactly the span its value covers. Windows and groups
without events are omitted. Rows are ordered by window start, then by group values.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from services.common.errors import InvalidArgument
from services.metering.model import UsageRow, Window
from services.metering.periods import DAY_US, HOUR_US, month_start_us, next_month_start_us
from services.metering.ports import UsageStore

# Most rows one query may produce; a wider query must narrow its range or window.
MAX_ROWS = 10_000

# Months are not of fixed length: the store sums per day and days fold into months here.
_BUCKET_US = {Window.WHOLE: None, Window.HOUR: HOUR_US, Window.DAY: DAY_US, Window.MONTH: DAY_US}


@dataclass(frozen=True)
class UsageQuery:
    tenant_id: str
    meter: str
    start_us: int
    end_us: int
    window: Window
    group_by: tuple[str, ...]


def _window_of(query: UsageQuery, bucket: int | None) -> tuple[int, int]:
    if bucket is None or query.window is Window.WHOLE:
        return query.start_us, query.end_us
    if query.window is Window.MONTH:
        start, end = month_start_us(bucket), next_month_start_us(bucket)
    else:
        width = _BUCKET_US[query.window]
        assert width is not None
        start, end = bucket, bucket + width
    return max(start, query.start_us), min(end, query.end_us)


async def query_usage(store: UsageStore, query: UsageQuery) -> list[UsageRow]:
    if len(set(query.group_by)) != len(query.group_by):
        raise InvalidArgument("group_by names a key twice", field_violations=[("group_by", "duplicate key")])
    raw = await store.aggregate(
        tenant_id=query.tenant_id,
        meter=query.meter,
        start_us=query.start_us,
        end_us=query.end_us,
        bucket_us=_BUCKET_US[query.window],
        group_by=query.group_by,
        limit=MAX_ROWS + 1,
    )
    if len(raw) > MAX_ROWS:
        raise InvalidArgument(
            f"query would return more than {MAX_ROWS} rows; narrow the time range or widen the window",
            field_violations=[("start_time", "range too wide for this window and group_by")],
        )
    sums: dict[tuple[int, int, tuple[str, ...]], int] = defaultdict(int)
    for bucket, groups, value in raw:
        start, end = _window_of(query, bucket)
        sums[(start, end, groups)] += value
    return [
        UsageRow(start, end, tuple(zip(query.group_by, groups, strict=True)), value)
        for (start, end, groups), value in sorted(sums.items())
    ]


def check_range(start_us: int, end_us: int) -> None:
    if start_us >= end_us:
        raise InvalidArgument(
            "start_time must be before end_time",
            field_violations=[("end_time", "must be after start_time")],
        )
