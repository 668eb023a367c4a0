"""OpenAI JSON <-> LLMService messages, and gRPC failures -> OpenAI's error JSON."""

from __future__ import annotations

import base64
import json
import struct

import grpc
import pytest
from makoto.llm.v1 import llm_pb2

from services.common.errors import InvalidArgument, ResourceExhausted
from services.llm import openai_wire as wire
from services.llm.limits import BudgetExceeded


def _trailers(exc: Exception) -> tuple[tuple[str, bytes], ...]:
    status = exc.to_status()  # type: ignore[attr-defined]
    return (("grpc-status-details-bin", status.SerializeToString()),)


def test_chat_request_maps_fields_and_text_parts() -> None:
    request, stream, usage = wire.chat_request(
        {
            "model": "chat",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}],
                },
            ],
            "max_completion_tokens": 12,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        "acme",
    )
    assert request.tenant_id == "acme" and request.model == "chat"
    assert [(m.role, m.content) for m in request.messages] == [("system", "be brief"), ("user", "hi there")]
    assert request.max_tokens == 12 and request.HasField("temperature") and request.temperature == 0
    assert stream and usage


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "chat", "messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "chat", "messages": [{"role": "user", "content": "x"}], "tools": [{}]}, "tools"),
        ({"model": "chat", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        (
            {"model": "chat", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
        ({"model": "chat", "messages": [{"role": "user", "content": "x"}], "max_tokens": "9"}, "max_tokens"),
    ],
)
def test_chat_request_refuses_what_it_cannot_honour(body: dict[str, object], param: str) -> None:
    with pytest.raises(wire.WireError) as caught:
        wire.chat_request(body, "acme")
    assert caught.value.status == 400 and caught.value.param == param


def test_stream_events_name_the_role_once_and_usage_only_when_asked() -> None:
    events = wire.ChunkWriter(created=7, include_usage=False)
    first = events.event(llm_pb2.ChatCompletionChunk(id="c1", model="m", delta="Hel"))
    second = events.event(llm_pb2.ChatCompletionChunk(id="c1", model="m", delta="lo", finish_reason="stop"))
    usage = llm_pb2.ChatCompletionChunk(id="c1", model="m", usage=llm_pb2.TokenUsage(prompt_tokens=1))
    assert first is not None and second is not None
    one, two = (json.loads(e.removeprefix(b"data: ")) for e in (first, second))
    assert one["choices"][0]["delta"] == {"role": "assistant", "content": "Hel"}
    assert two["choices"][0]["delta"] == {"content": "lo"} and two["choices"][0]["finish_reason"] == "stop"
    assert one["object"] == "chat.completion.chunk" and one["created"] == 7
    assert events.event(usage) is None
    with_usage = wire.ChunkWriter(created=7, include_usage=True).event(usage)
    assert with_usage is not None and json.loads(with_usage[6:])["usage"]["prompt_tokens"] == 1


def test_base64_embeddings_are_little_endian_float32() -> None:
    answer = llm_pb2.CreateEmbeddingsResponse(
        model="e", data=[llm_pb2.Embedding(index=0, values=[0.5, -2.0])]
    )
    encoded = wire.embeddings(answer, "base64")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.5, -2.0)
    assert wire.embeddings(answer, "float")["data"][0]["embedding"] == [0.5, -2.0]


def test_grpc_failures_become_openai_errors() -> None:
    limited = ResourceExhausted("slow down", retry_after_seconds=1.5, reason="LLM_RATE_LIMITED")
    err = wire.from_grpc(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", _trailers(limited))
    assert (err.status, err.type, err.code) == (429, "rate_limit_error", "llm_rate_limited")
    assert err.headers == {"retry-after": "2", "retry-after-ms": "1500"}
    budget = BudgetExceeded("used up", retry_after_seconds=None)
    err = wire.from_grpc(grpc.StatusCode.RESOURCE_EXHAUSTED, "used up", _trailers(budget))
    assert (err.status, err.type) == (429, "insufficient_quota") and "retry-after" not in err.headers
    bad = InvalidArgument("invalid request", field_violations=[("messages", "too many")])
    err = wire.from_grpc(grpc.StatusCode.INVALID_ARGUMENT, "invalid request", _trailers(bad))
    assert (err.status, err.param) == (400, "messages")
    assert wire.from_grpc(grpc.StatusCode.PERMISSION_DENIED, "no", ()).status == 403
    internal = wire.from_grpc(grpc.StatusCode.INTERNAL, "Traceback: secret detail", ())
    assert internal.status == 500 and "secret" not in internal.message
    assert wire.from_status(budget.to_status()).type == "insufficient_quota"
