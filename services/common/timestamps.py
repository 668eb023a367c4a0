"""datetime -> google.protobuf.Timestamp without protobuf's pure-Python FromDatetime (a
calendar.timegm and a time tuple per call: ~5 µs, several per answered item or usage event)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def set_timestamp(out: timestamp_pb2.Timestamp, when: datetime) -> None:
    """What out.FromDatetime(when) does: a naive datetime is taken as UTC; the result is a
    normalized Timestamp (nanos in [0, 1e9), seconds floored for times before 1970)."""
    delta = (when if when.tzinfo is not None else when.replace(tzinfo=UTC)) - _EPOCH
    out.seconds = delta.days * 86400 + delta.seconds
    out.nanos = delta.microseconds * 1000


def timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    set_timestamp(out, when)
    return out
