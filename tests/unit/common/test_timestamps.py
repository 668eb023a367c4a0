"""set_timestamp gives exactly what protobuf's FromDatetime gives (it replaces it on hot paths)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import timestamp_pb2

from services.common.timestamps import set_timestamp, timestamp

CASES = [
    datetime(2026, 12, 5, 11, 30, 15, 123456, tzinfo=UTC),
    datetime(2026, 12, 5, 11, 30, 15, 123456),  # naive: UTC
    datetime(2026, 12, 5, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),  # before the epoch: floored seconds
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
]


@pytest.mark.parametrize("when", CASES, ids=[c.isoformat() for c in CASES])
def test_same_as_from_datetime(when: datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(when)
    got = timestamp_pb2.Timestamp()
    set_timestamp(got, when)
    assert (got.seconds, got.nanos) == (expected.seconds, expected.nanos)
    assert timestamp(when) == expected
    assert 0 <= got.nanos < 1_000_000_000
