"""Envoy's own answers in the mesh's one error language (DESIGN 5b).

Whatever Envoy answers itself — no route, 401 from jwt_authn, 403 from RBAC, 400 from the
transcoder's JSON parser, 408 request timeouts, 413, 429, 503 with no healthy or reachable
upstream, 504 — a REST client gets a `google.rpc.Status` JSON body, like the services' own errors
after transcoding: {"code", "message", "details": [ErrorInfo(reason, domain "makoto"),
RetryInfo where retrying helps, BadRequest for a body Envoy could not parse]}.

gRPC callers are left alone on purpose: Envoy already turns a local reply into a trailers-only
gRPC response with the matching grpc-status, and the message stays the plain text (a JSON
document there would only garble grpc-message).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DOMAIN = "makoto"
# The client's own content-type, kept as dynamic metadata before the transcoder rewrites the
# request's content-type to application/grpc (which would make a REST call look like gRPC).
METADATA_NAMESPACE = "makoto.client"
METADATA_KEY = "content_type"
RETRY_AFTER = "1s"


@dataclass(frozen=True)
class LocalReply:
    http: int
    grpc_code: int
    reason: str
    retry: bool = False
    bad_request: bool = False


# HTTP status of Envoy's reply -> what the client is told. gRPC codes are the numbers of
# google.rpc.Code (INVALID_ARGUMENT 3, DEADLINE_EXCEEDED 4, NOT_FOUND 5, PERMISSION_DENIED 7,
# RESOURCE_EXHAUSTED 8, UNAVAILABLE 14, UNAUTHENTICATED 16, UNKNOWN 2).
REPLIES: tuple[LocalReply, ...] = (
    # The transcoder could not turn the request into the gRPC message (bad JSON, wrong type,
    # unknown query parameter): its text names the field, e.g. "item.attributes[0].value: ...".
    LocalReply(400, 3, "INVALID_REQUEST", bad_request=True),
    LocalReply(401, 16, "UNAUTHENTICATED"),
    LocalReply(403, 7, "PERMISSION_DENIED"),
    # No such REST path / gRPC method.
    LocalReply(404, 5, "NO_ROUTE"),
    # The client did not send its headers / body in time.
    LocalReply(408, 4, "REQUEST_TIMEOUT"),
    LocalReply(413, 3, "REQUEST_TOO_LARGE"),
    LocalReply(429, 8, "RATE_LIMITED", retry=True),
    # Upstream reset / connect failure / no healthy replica: another try may land elsewhere.
    LocalReply(502, 14, "UPSTREAM_UNAVAILABLE", retry=True),
    LocalReply(503, 14, "UPSTREAM_UNAVAILABLE", retry=True),
    LocalReply(504, 4, "DEADLINE_EXCEEDED"),
)


def status_body(reply: LocalReply) -> dict[str, Any]:
    """The json_format body: Envoy fills %LOCAL_REPLY_BODY% (its own text, JSON-escaped) and
    %RESPONSE_CODE_DETAILS% (which check answered, e.g. jwt_authn_access_denied{Jwt_is_missing})."""
    info: dict[str, Any] = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reply.reason,
        "domain": DOMAIN,
        "metadata": {"envoy_details": "%RESPONSE_CODE_DETAILS%"},
    }
    details: list[dict[str, Any]] = [info]
    if reply.retry:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": RETRY_AFTER})
    if reply.bad_request:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                # Envoy's text leads with the field path ("item.attributes[0].value: ..."); a
                # format string cannot cut it out, so the description carries it.
                "fieldViolations": [{"field": "", "description": "%LOCAL_REPLY_BODY%"}],
            }
        )
    return {"code": reply.grpc_code, "message": "%LOCAL_REPLY_BODY%", "details": details}


def client_content_type_filter() -> dict[str, Any]:
    """header_to_metadata: the client's content-type into dynamic metadata (never a header that
    could reach a service)."""
    rule = {
        "header": "content-type",
        "on_header_present": {
            "metadata_namespace": METADATA_NAMESPACE,
            "key": METADATA_KEY,
            "type": "STRING",
        },
        "remove": False,
    }
    return {
        "name": "envoy.filters.http.header_to_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config",
            "request_rules": [rule],
        },
    }


def _grpc_client() -> dict[str, Any]:
    return {
        "metadata_filter": {
            "matcher": {
                "filter": METADATA_NAMESPACE,
                "path": [{"key": METADATA_KEY}],
                "value": {"string_match": {"prefix": "application/grpc"}},
            },
            "match_if_key_not_found": False,
        }
    }


def _status(op: str, code: int) -> dict[str, Any]:
    value = {"default_value": code, "runtime_key": f"makoto.local_reply.{op.lower()}_{code}"}
    return {"status_code_filter": {"comparison": {"op": op, "value": value}}}


def _health_probe() -> dict[str, Any]:
    return {"header_filter": {"header": {"name": ":path", "string_match": {"prefix": "/healthz"}}}}


def local_reply_config() -> dict[str, Any]:
    """HttpConnectionManager.local_reply_config: one mapper per status for REST callers, and a
    catch-all (UNKNOWN) so no Envoy answer to a REST caller is ever text/plain."""
    # The health check filter answers 503 with an empty body: say what it means.
    not_ready = status_body(LocalReply(503, 14, "NOT_READY", retry=True))
    not_ready["message"] = "not ready: a service has no healthy replica"
    mappers: list[dict[str, Any]] = [
        # gRPC callers first, and left as they are: the first mapper that matches wins.
        {"filter": _grpc_client()},
        {
            "filter": {"and_filter": {"filters": [_health_probe(), _status("EQ", 503)]}},
            "body_format_override": {"json_format": not_ready, "content_type": "application/json"},
        },
    ]
    mappers += [
        {
            "filter": _status("EQ", r.http),
            "body_format_override": {"json_format": status_body(r), "content_type": "application/json"},
        }
        for r in REPLIES
    ]
    # Any other error status (not /healthz's 200, which is a local reply too).
    mappers.append(
        {
            "filter": _status("GE", 400),
            "body_format_override": {
                "json_format": status_body(LocalReply(0, 2, "UNKNOWN")),
                "content_type": "application/json",
            },
        }
    )
    return {"mappers": mappers}
