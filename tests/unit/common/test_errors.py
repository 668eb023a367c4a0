"""Domain errors carry google.rpc details: ErrorInfo always, RetryInfo when retrying helps."""

from __future__ import annotations

from google.rpc import error_details_pb2

from services.common.errors import InvalidArgument, ResourceExhausted, Unavailable


def _retry_ms(err: ResourceExhausted | Unavailable) -> int | None:
    for detail in err.to_status().details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return int(info.retry_delay.ToMilliseconds())
    return None


def test_retry_info_defaults_and_overrides() -> None:
    assert _retry_ms(Unavailable("backend down")) == 1000  # retrying an outage usually helps
    assert _retry_ms(Unavailable("backend down", retry_after_seconds=None)) is None
    assert _retry_ms(Unavailable("backend down", retry_after_seconds=30)) == 30000
    assert _retry_ms(ResourceExhausted("quota")) is None  # no hint: a quota may not reset soon
    assert _retry_ms(ResourceExhausted("slow down", retry_after_seconds=0.25)) == 250


def test_error_info_and_field_violations() -> None:
    status = InvalidArgument("bad", field_violations=[("tenant_id", "pattern")], reason="X").to_status()
    kinds = [d.type_url.rsplit(".", 1)[-1] for d in status.details]
    assert kinds == ["ErrorInfo", "BadRequest"]
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("X", "makoto")
