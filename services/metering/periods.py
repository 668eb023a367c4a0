"""UTC time arithmetic in integer microseconds (what the store keeps) and calendar months."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.common.errors import InvalidArgument

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
US_PER_SECOND = 1_000_000
HOUR_US = 3600 * US_PER_SECOND
DAY_US = 24 * HOUR_US
# Latest instant a query may name (keeps every window end a valid datetime).
MAX_US = (datetime(9999, 1, 1, tzinfo=UTC) - EPOCH) // _ONE_US
MIN_US = 0


def to_us(when: datetime) -> int:
    """Exact microseconds since the epoch (a naive datetime is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def month_start_us(us: int) -> int:
    when = from_us(us)
    return to_us(datetime(when.year, when.month, 1, tzinfo=UTC))


def next_month_start_us(us: int) -> int:
    when = from_us(us)
    year, month = (when.year + 1, 1) if when.month == 12 else (when.year, when.month + 1)
    return to_us(datetime(year, month, 1, tzinfo=UTC))


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """'YYYY-MM' for a month from 1970-01 to 9998-12."""
        try:
            year_s, month_s = text.split("-")
            if len(year_s) != 4 or len(month_s) != 2:
                raise ValueError(text)
            year, month = int(year_s), int(month_s)
        except ValueError:
            raise InvalidArgument(
                "month must be YYYY-MM", field_violations=[("month", "must be YYYY-MM")]
            ) from None
        if not (1970 <= year <= 9998 and 1 <= month <= 12):
            raise InvalidArgument(
                "month out of range", field_violations=[("month", "must be between 1970-01 and 9998-12")]
            )
        return cls(year, month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def start_us(self) -> int:
        return to_us(datetime(self.year, self.month, 1, tzinfo=UTC))

    @property
    def end_us(self) -> int:
        return next_month_start_us(self.start_us)
