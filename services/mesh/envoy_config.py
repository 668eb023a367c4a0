"""Render Envoy's configuration from MeshSettings.

One listener carries REST (HTTP/1.1) and gRPC (h2c). Filter order, each step explained in
envoy/README.md:

  header_mutation (drop client-sent identity headers) -> jwt_authn -> health_check (/healthz)
  -> grpc_json_transcoder -> grpc_field_extraction (tenant id of the final gRPC message)
  -> rbac (CEL: message tenant == token tenant; platform-admin only where allowed) -> router

`python -m services.mesh.envoy_config --reference` rewrites the committed envoy/envoy.yaml.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from services.common import tls
from services.common.config import JwtProvider, MeshSettings
from services.common.identity import ROLE_CLAIM, TENANT_CLAIM, TENANT_HEADER, Role
from services.common.jwt_verify import LEEWAY_SECONDS as CLOCK_SKEW_SECONDS
from services.mesh import envoy_observability
from services.mesh.cel import Cel, CelBuilder
from services.mesh.local_replies import client_content_type_filter, local_reply_config
from services.mesh.methods import PUBLIC_SERVICES, Access, Method, public_methods

REPO_ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR_PATH = REPO_ROOT / "gen" / "makoto.binpb"
REFERENCE_PATH = REPO_ROOT / "envoy" / "envoy.yaml"
BAD_REQUEST_LUA = Path(__file__).with_name("bad_request_field.lua")
STRICT_TOKEN_LUA = Path(__file__).with_name("strict_token.lua")
OPENAPI_DOC = REPO_ROOT / "docs" / "openapi.json"
OPENAPI_ROUTE = "/openapi.json"

MiB = 1024 * 1024
# Room left in a gRPC message for the fields around a REST body (tenant id, key, content type).
_BODY_HEADROOM = 64 * 1024
# HTTP/2 flow-control windows towards the services: a slow REST client back-pressures the
# service instead of filling Envoy's memory.
_UPSTREAM_WINDOW = MiB
# Streams per upstream connection to a service running several workers on one port: the kernel
# spreads connections (not calls) over the workers, so under load Envoy must open several.
_WORKER_STREAMS = 4
# Request buffer of client-streaming routes: one maximal chunk message (1 MiB) plus framing.
_STREAM_BUFFER = 2 * MiB
# Unary route timeouts per cluster; streaming routes have none (clients' grpc-timeout still applies).
_UNARY_TIMEOUT_S = {"tenant": 60, "storage": 30, "llm": 300, "metering": 30}

JWT_FILTER = "envoy.filters.http.jwt_authn"
FIELD_FILTER = "envoy.filters.http.grpc_field_extraction"
RBAC_FILTER = "envoy.filters.http.rbac"
JWT_PAYLOAD_KEY = "jwt_payload"

# Identity-looking headers a client might send hoping a service trusts them. None of our services
# reads them (they verify the JWT themselves), and none may ever reach a service.
IDENTITY_HEADERS = (
    "x-jwt-payload",
    "x-tenant-id",
    "x-tenant",
    "x-user-id",
    "x-user",
    "x-role",
    "x-roles",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-remote-user",
    "x-authenticated-user",
    "x-auth-user",
    "x-amzn-oidc-data",
    "x-amzn-oidc-identity",
    "x-ms-client-principal",
    "x-ms-client-principal-id",
    "x-ms-client-principal-name",
    "x-envoy-original-path",
)
IDENTITY_HEADER_PREFIXES = ("x-makoto-", "x-jwt-", "x-auth-request-")


def _upstream_host(host: str) -> str:
    # A wildcard listen address is not something to connect to.
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _typed(type_name: str, **body: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **body}


def rest_body_limit(settings: MeshSettings) -> int:
    """Largest REST request body Envoy accepts: the transcoded gRPC message must still fit the
    services' max_message_bytes."""
    return max(MiB, settings.max_message_bytes - _BODY_HEADROOM)


# -- filters ---------------------------------------------------------------------------------


def _header_mutation() -> dict[str, Any]:
    mutations: list[dict[str, Any]] = [{"remove": h} for h in IDENTITY_HEADERS]
    mutations += [{"remove_on_match": {"key_matcher": {"prefix": p}}} for p in IDENTITY_HEADER_PREFIXES]
    return {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": _typed(
            "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            mutations={"request_mutations": mutations},
        ),
    }


def _bad_request_field() -> dict[str, Any]:
    """Lua: copies the field path of Envoy's own 400 text into BadRequest's `field`
    (services/mesh/bad_request_field.lua explains why). Early in the chain, so it sees the
    transcoder's replies on their way out."""
    return {
        "name": "envoy.filters.http.lua",
        "typed_config": _typed(
            "envoy.extensions.filters.http.lua.v3.Lua",
            default_source_code={"inline_string": BAD_REQUEST_LUA.read_text()},
        ),
    }


def _strict_token() -> dict[str, Any]:
    """Lua after jwt_authn: the exact `Bearer <jwt>` header and the iat/nbf rules the services
    apply (services/mesh/strict_token.lua says why jwt_authn alone is looser)."""
    source = (
        STRICT_TOKEN_LUA.read_text()
        .replace("__SKEW_SECONDS__", str(CLOCK_SKEW_SECONDS))
        .replace("__JWT_FILTER__", JWT_FILTER)
        .replace("__PAYLOAD_KEY__", JWT_PAYLOAD_KEY)
    )
    return {
        "name": "makoto.strict_token",
        "typed_config": _typed(
            "envoy.extensions.filters.http.lua.v3.Lua", default_source_code={"inline_string": source}
        ),
    }


# Trace context a client could send to choose the trace id services log under. Removed before
# Envoy's tracing reads them, so every trace is rooted at the edge.
CLIENT_TRACE_HEADERS = (
    "traceparent",
    "tracestate",
    "baggage",
    "grpc-trace-bin",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "x-ot-span-context",
    "uber-trace-id",
    "x-cloud-trace-context",
    "x-amzn-trace-id",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
)


def _early_trace_header_removal() -> list[dict[str, Any]]:
    """HCM early header mutation: runs before route selection and tracing, so a client-sent
    traceparent can neither become the trace Envoy continues nor reach a service. x-request-id
    is regenerated for every external request (preserve_external_request_id off)."""
    return [
        {
            "name": "envoy.http.early_header_mutation.header_mutation",
            "typed_config": _typed(
                "envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
                mutations=[{"remove": h} for h in CLIENT_TRACE_HEADERS],
            ),
        }
    ]


# sockaddr_un.sun_path holds 108 bytes on Linux, including the terminating NUL.
_SUN_PATH_MAX = 108


def admin(settings: MeshSettings) -> dict[str, Any]:
    """Envoy's admin (it can switch on debug logs, drain, quit) on a Unix socket only its user
    may open (0600); never on a TCP port."""
    path = str(settings.admin_socket_path)
    if len(path.encode()) >= _SUN_PATH_MAX:
        raise ValueError(
            f"Envoy admin socket path is too long for a Unix socket ({path}): "
            "set MAKOTO_ENVOY_ADMIN_SOCKET to a shorter path"
        )
    return {"address": {"pipe": {"path": path, "mode": 0o600}}}


def _jwt_provider(provider: JwtProvider, max_lifetime_seconds: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "issuer": provider.issuer,
        # Only `Authorization: Bearer`: never ?access_token= (it would land in logs and caches).
        "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
        # Keep the header: every service verifies the token again (zero trust).
        "forward": True,
        "payload_in_metadata": JWT_PAYLOAD_KEY,
        "jwt_cache_config": {"jwt_cache_size": 1000},
        "clock_skew_seconds": CLOCK_SKEW_SECONDS,
        # A token without exp is refused, as the services refuse it.
        "require_expiration": True,
        # The services' maximum token lifetime (exp - iat) for users, enforced here too.
        "max_lifetime": f"{max_lifetime_seconds}s",
    }
    if provider.audiences:
        out["audiences"] = list(provider.audiences)
    if provider.jwks_path is not None:
        out["local_jwks"] = {"filename": str(provider.jwks_path)}
    elif provider.jwks_url:
        out["remote_jwks"] = {
            "http_uri": {"uri": provider.jwks_url, "cluster": _jwks_cluster_name(provider), "timeout": "5s"},
            "cache_duration": "600s",
            "async_fetch": {},
            "retry_policy": {"num_retries": 3},
        }
    else:
        raise ValueError(f"JWT provider {provider.name} has neither jwks_path nor jwks_url")
    return out


def _jwt_authn(
    settings: MeshSettings, public_paths: tuple[str, ...] = (), public_posts: tuple[str, ...] = ()
) -> dict[str, Any]:
    """public_paths: GETs without a token (health, the OpenAPI document, the signed export
    download's REST path); public_posts: POSTs without one (the API-key exchange by its REST
    path, and every public method's gRPC path)."""
    providers = settings.jwt_providers()
    names = [p.name for p in providers]
    requires: dict[str, Any] = (
        {"provider_name": names[0]}
        if len(names) == 1
        else {"requires_any": {"requirements": [{"provider_name": n} for n in names]}}
    )
    return {
        "name": JWT_FILTER,
        "typed_config": _typed(
            "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            providers={p.name: _jwt_provider(p, settings.max_token_ttl_seconds) for p in providers},
            rules=[
                # Only the health probes are public.
                *(
                    {
                        "match": {
                            "path": path,
                            "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
                        }
                    }
                    for path in [*health_paths(), *public_paths]
                ),
                *(
                    {
                        "match": {
                            "path": path,
                            "headers": [{"name": ":method", "string_match": {"exact": "POST"}}],
                        }
                    }
                    for path in public_posts
                ),
                {"match": {"prefix": "/"}, "requires": requires},
            ],
        ),
    }


def _health_check(settings: MeshSettings, path: str, clusters: list[str]) -> dict[str, Any]:
    """GET `path` answers 200 while each of `clusters` has at least one replica passing Envoy's
    gRPC health check (per service name), else 503. Envoy answers it itself."""
    return {
        "name": "envoy.filters.http.health_check",
        "typed_config": _typed(
            "envoy.extensions.filters.http.health_check.v3.HealthCheck",
            pass_through_mode=False,
            headers=[
                {"name": ":path", "string_match": {"exact": path}},
                {"name": ":method", "string_match": {"exact": "GET"}},
            ],
            cluster_min_healthy_percentages={
                c: {"value": _one_replica_percent(settings.replicas(c))} for c in clusters
            },
        ),
    }


def _one_replica_percent(replicas: int) -> float:
    # "At least one replica healthy" as the percentage Envoy wants (a hair under 1/N).
    return 100.0 if replicas == 1 else round(100.0 / replicas, 2) - 0.01


def health_paths() -> dict[str, list[str]]:
    """/healthz: every public service is ready; /healthz/<service>: that one is (readiness per
    service, e.g. for a load balancer in front of a single service)."""
    paths = {"/healthz": list(PUBLIC_SERVICES)}
    paths.update({f"/healthz/{c}": [c] for c in PUBLIC_SERVICES})
    return paths


def _json_body_limit(settings: MeshSettings) -> dict[str, Any]:
    """JSON REST bodies over the limit get 413. The transcoder streams JSON into the gRPC message,
    so its max_request_body_size only bounds raw (HttpBody) bodies; without this a huge JSON body
    overflowed the field-extraction buffer and answered 400 text/plain. Applied only to
    `application/json` requests, so gRPC client streaming and raw uploads are never buffered here
    (and JSON bodies are buffered whole by the transcoder anyway)."""
    content_type = {
        "name": "content-type",
        "typed_config": _typed(
            "envoy.type.matcher.v3.HttpRequestHeaderMatchInput", header_name="content-type"
        ),
    }
    not_json = {
        "not_matcher": {
            "single_predicate": {
                "input": content_type,
                "value_match": {"prefix": "application/json"},
            }
        }
    }
    return {
        "name": "envoy.filters.http.buffer",
        "typed_config": _typed(
            "envoy.extensions.common.matching.v3.ExtensionWithMatcher",
            extension_config={
                "name": "envoy.filters.http.buffer",
                "typed_config": _typed(
                    "envoy.extensions.filters.http.buffer.v3.Buffer",
                    max_request_bytes=rest_body_limit(settings),
                ),
            },
            xds_matcher={
                "matcher_list": {
                    "matchers": [
                        {
                            "predicate": not_json,
                            "on_match": {
                                "action": {
                                    "name": "skip",
                                    "typed_config": _typed(
                                        "envoy.extensions.filters.common.matcher.action.v3.SkipFilter"
                                    ),
                                }
                            },
                        }
                    ]
                }
            },
        ),
    }


def _transcoder(settings: MeshSettings, descriptor: Path) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.grpc_json_transcoder",
        "typed_config": _typed(
            "envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            proto_descriptor=str(descriptor),
            services=list(PUBLIC_SERVICES.values()),
            auto_mapping=False,
            convert_grpc_status=True,
            # Keeps %23 and %2523 distinct in object keys; %2F stays encoded (not a separator).
            url_unescape_spec="ALL_CHARACTERS_EXCEPT_SLASH",
            print_options={
                "add_whitespace": False,
                "always_print_primitive_fields": True,
                "always_print_enums_as_ints": False,
                "preserve_proto_field_names": False,
                # Server-streamed messages as SSE (`data: {...}`); HttpBody streams stay raw bytes.
                "stream_sse_style_delimited": True,
            },
            max_request_body_size=rest_body_limit(settings),
            max_response_body_size=settings.max_message_bytes,
            request_validation_options={
                "reject_unknown_method": True,
                "reject_unknown_query_parameters": True,
            },
            case_insensitive_enum_parsing=True,
        ),
    }


def _field_extraction(methods: list[Method], descriptor: Path) -> dict[str, Any]:
    extractions: dict[str, Any] = {
        m.full_name: {"request_field_extractions": {m.tenant_field: {}}}
        for m in methods
        if m.tenant_field is not None
    }
    return {
        "name": FIELD_FILTER,
        "typed_config": _typed(
            "envoy.extensions.filters.http.grpc_field_extraction.v3.GrpcFieldExtractionConfig",
            descriptor_set={"filename": str(descriptor)},
            extractions_by_method=extractions,
        ),
    }


def _deny_all() -> dict[str, Any]:
    # Default for anything without a route-level policy (internal RPCs, unknown paths): refuse.
    return {"rules": {"action": "DENY", "policies": {"deny-all": _policy(None)}}}


def _policy(condition: Cel | None) -> dict[str, Any]:
    policy: dict[str, Any] = {"permissions": [{"any": True}], "principals": [{"any": True}]}
    if condition is not None:
        policy["condition"] = _Flow(condition.ast)
    return policy


def tenant_condition(method: Method) -> Cel:
    """The CEL condition a call to `method` must satisfy, over the verified JWT payload and the
    tenant id extracted from the final gRPC request message."""
    cel = CelBuilder()

    def claim(name: str) -> Cel:
        return cel.path("metadata", "filter_metadata", JWT_FILTER, JWT_PAYLOAD_KEY, name)

    def is_platform_admin() -> Cel:
        return cel.eq(claim(ROLE_CLAIM), cel.const(str(Role.PLATFORM_ADMIN)))

    if method.access is Access.ADMIN:
        return is_platform_admin()
    assert method.tenant_field is not None
    if not method.roles:
        raise ValueError(f"{method.full_name}: a tenant route needs tenant roles")
    # grpc_field_extraction stores each field as a list of strings.
    requested = cel.path("metadata", "filter_metadata", FIELD_FILTER, method.tenant_field, 0)
    # The role, per route, as the service checks it: a platform-admin or service token that
    # carries a tenant claim is not a tenant user.
    role_ok = functools.reduce(cel.or_, (cel.eq(claim(ROLE_CLAIM), cel.const(r)) for r in method.roles))
    own_tenant = cel.and_(role_ok, cel.eq(requested, claim(TENANT_CLAIM)))
    if method.access is Access.TENANT_OR_ADMIN:
        return cel.or_(is_platform_admin(), own_tenant)
    return own_tenant


def _rbac() -> dict[str, Any]:
    return {
        "name": RBAC_FILTER,
        "typed_config": _typed("envoy.extensions.filters.http.rbac.v3.RBAC", **_deny_all()),
    }


def _router() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
    }


# -- routes and clusters ---------------------------------------------------------------------


def unary_timeout(settings: MeshSettings, cluster: str) -> float:
    return float(settings.envoy_route_timeouts.get(cluster, _UNARY_TIMEOUT_S[cluster]))


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _retry_policy(method: Method) -> dict[str, Any]:
    """Reads are retried on anything a healthy replica may answer differently (UNAVAILABLE, a
    reset). Any call, writes included, is retried when it provably never reached a service:
    the connection was refused (a replica just died) or the stream refused (it is draining).
    A retry goes to another replica when there is one."""
    retry_on = (
        "unavailable,reset,connect-failure,refused-stream"
        if method.idempotent
        else "connect-failure,refused-stream"
    )
    return {
        "retry_on": retry_on,
        "num_retries": 2,
        "retry_back_off": {"base_interval": "0.05s", "max_interval": "0.5s"},
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": _typed(
                    "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
                ),
            }
        ],
        "host_selection_retry_max_attempts": 3,
    }


def _route(settings: MeshSettings, method: Method) -> dict[str, Any]:
    action: dict[str, Any] = {
        "cluster": method.cluster,
        # The listener's stream idle timeout (60 s) would cut a unary call that legitimately
        # waits longer for its answer (an LLM generation may take minutes): a route of a slow
        # service may stay silent as long as its deadline.
        "idle_timeout": _seconds(
            max(settings.envoy_stream_idle_timeout_seconds, unary_timeout(settings, method.cluster))
        ),
    }
    if method.streaming:
        # No overall limit (a chat stream or an upload may take long); the client's grpc-timeout
        # still ends it, and the stream idle timeout ends a silent one.
        action["timeout"] = "0s"
        action["max_stream_duration"] = {"grpc_timeout_header_max": "0s"}
    else:
        timeout = _seconds(unary_timeout(settings, method.cluster))
        # Why not `timeout`: with max_stream_duration on a route, the router ignores the route
        # timeout, and grpc_timeout_header_max alone limits only requests that carry grpc-timeout:
        # a REST call (never has one) to a hung backend ran unbounded (100 s seen). So: the
        # stream's whole life (body upload included) is bounded by max_stream_duration, a
        # client's grpc-timeout may shorten but not lengthen it.
        action["timeout"] = timeout
        action["max_stream_duration"] = {"max_stream_duration": timeout, "grpc_timeout_header_max": timeout}
    action["retry_policy"] = _retry_policy(method)
    public = method.access is Access.PUBLIC
    condition = None if public else tenant_condition(method)
    route: dict[str, Any] = {
        "name": method.full_name,
        "match": {"path": method.grpc_path, "grpc": {}},
        "route": action,
        # For people reading the config (and the admin config_dump): the CEL below, as source.
        "metadata": {
            "filter_metadata": {
                "makoto": {"access": method.access.value, "cel": condition.src if condition else "true"}
            }
        },
        "typed_per_filter_config": {
            RBAC_FILTER: _typed(
                "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
                # A public route has no claims to check (jwt_authn does not run on it).
                **(
                    {}
                    if condition is None
                    else {
                        "rbac": {
                            "rules": {
                                "action": "ALLOW",
                                "policies": {method.access.value: _policy(condition)},
                            }
                        }
                    }
                ),
            )
        },
    }
    if method.tenant_field is not None:
        # grpc_field_extraction holds the whole first message to read the tenant id (default
        # limit 1 MiB): allow any message a service would accept (a PutObjectContent is as big as
        # its object). A client-streaming upload's messages are at most one 1 MiB chunk; its
        # limit stays small so a slow service back-pressures the client early.
        route["request_body_buffer_limit"] = (
            _STREAM_BUFFER if method.client_streaming else settings.max_message_bytes + _BODY_HEADROOM
        )
    return route


# -- mTLS to the services (services/common/tls.py) ---------------------------------------------


def upstream_tls(settings: MeshSettings, service: str, *, alpn: tuple[str, ...] = ("h2",)) -> dict[str, Any]:
    """Envoy's client side of the mesh's mTLS for one service's cluster: Envoy's certificate,
    the mesh CA, and only the service's own SAN accepted (a certificate of another service, or
    of another CA, fails the handshake: 503 and `upstream_reset_before_response_started`)."""
    tls_dir = settings.tls_path
    files = tls.cert_files(tls_dir, tls.ENVOY)
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": _typed(
            "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            sni=tls.dns_name(service),
            common_tls_context={
                "alpn_protocols": list(alpn),
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(files.cert)},
                        "private_key": {"filename": str(files.key)},
                    }
                ],
                "validation_context": {
                    "trusted_ca": {"filename": str(files.ca)},
                    "match_typed_subject_alt_names": [
                        {"san_type": "URI", "matcher": {"exact": tls.spiffe_id(service)}}
                    ],
                },
            },
        ),
    }


def _with_upstream_tls(
    settings: MeshSettings, cluster: dict[str, Any], service: str, alpn: tuple[str, ...] = ("h2",)
) -> dict[str, Any]:
    if settings.tls:
        cluster["transport_socket"] = upstream_tls(settings, service, alpn=alpn)
    return cluster


def _cluster(settings: MeshSettings, name: str, ports: list[int]) -> dict[str, Any]:
    host = _upstream_host(settings.host)
    http2: dict[str, Any] = {
        "initial_stream_window_size": _UPSTREAM_WINDOW,
        "initial_connection_window_size": _UPSTREAM_WINDOW,
    }
    if settings.workers(name) > 1:
        http2["max_concurrent_streams"] = _WORKER_STREAMS
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            # One endpoint per replica (MAKOTO_<SERVICE>_REPLICAS).
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(host, p)}} for p in ports]}],
        },
        # A replica that fails calls at the connection level (refused, reset: it died) is ejected
        # before the next health check notices; at most half a cluster, so one replica always stays.
        # Retries may use a fifth of the active requests (at least 16 at once): Envoy's default of
        # 3 concurrent retries left reads failing when a replica died under load.
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "retry_budget": {"budget_percent": {"value": 20.0}, "min_retry_concurrency": 16},
                }
            ]
        },
        "outlier_detection": {
            "consecutive_5xx": 5,
            "consecutive_gateway_failure": 2,
            "consecutive_local_origin_failure": 2,
            "split_external_local_origin_errors": True,
            "interval": "1s",
            "base_ejection_time": "5s",
            "max_ejection_percent": 50,
            "enforcing_consecutive_5xx": 100,
            "enforcing_consecutive_gateway_failure": 100,
            "enforcing_consecutive_local_origin_failure": 100,
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                explicit_http_config={"http2_protocol_options": http2},
            )
        },
        "health_checks": [
            {
                "timeout": "1s",
                "interval": "1s",
                # Idle clusters are checked just as often, so /healthz stays truthful.
                "no_traffic_interval": "1s",
                "no_traffic_healthy_interval": "1s",
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "grpc_health_check": {"service_name": PUBLIC_SERVICES[name]},
            }
        ],
    }


def _jwks_cluster_name(provider: JwtProvider) -> str:
    return f"jwks_{provider.name}"


def _jwks_cluster(provider: JwtProvider) -> dict[str, Any]:
    assert provider.jwks_url
    url = urlsplit(provider.jwks_url)
    tls = url.scheme == "https"
    host = url.hostname or ""
    port = url.port or (443 if tls else 80)
    cluster: dict[str, Any] = {
        "name": _jwks_cluster_name(provider),
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": _jwks_cluster_name(provider),
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(host, port)}}]}],
        },
    }
    if tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": _typed(
                "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                sni=host,
                common_tls_context={
                    "validation_context": {"trusted_ca": {"filename": _system_ca_bundle()}},
                },
            ),
        }
    return cluster


def _system_ca_bundle() -> str:
    for candidate in (
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ):
        if Path(candidate).exists():
            return candidate
    return "/etc/ssl/certs/ca-certificates.crt"


def _access_log(log_dir: Path) -> list[dict[str, Any]]:
    # No tokens: the path is logged without its query string, headers are not logged at all.
    fmt = {
        "time": "%START_TIME%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        "protocol": "%PROTOCOL%",
        "method": "%REQ(:METHOD)%",
        "path": "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "route": "%ROUTE_NAME%",
        "status": "%RESPONSE_CODE%",
        "grpc_status": "%GRPC_STATUS%",
        "details": "%RESPONSE_CODE_DETAILS%",
        "flags": "%RESPONSE_FLAGS%",
        "bytes_in": "%BYTES_RECEIVED%",
        "bytes_out": "%BYTES_SENT%",
        "duration_ms": "%DURATION%",
        "upstream_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
        "cluster": "%UPSTREAM_CLUSTER%",
        # Why the upstream connection failed, e.g. a service certificate without the expected SAN.
        "upstream_failure": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
        "subject": f"%DYNAMIC_METADATA({JWT_FILTER}:{JWT_PAYLOAD_KEY}:sub)%",
        # The tenant the SERVICE decided (its response header or trailer), never what Envoy's
        # field extraction read: the service parses the request strictly (envoy/README.md).
        "tenant_id": f"%RESP({TENANT_HEADER.upper()})%",
        "tenant_id_trailer": f"%TRAILER({TENANT_HEADER.upper()})%",
        "user_agent": "%REQ(USER-AGENT)%",
    }
    return [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": _typed(
                "envoy.extensions.access_loggers.file.v3.FileAccessLog",
                path=str(log_dir / "envoy-access.log"),
                log_format={
                    "json_format": fmt,
                    "formatters": [
                        {
                            "name": "envoy.formatter.req_without_query",
                            "typed_config": _typed(
                                "envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery"
                            ),
                        }
                    ],
                },
            ),
        }
    ]


def _openapi_route(doc: Path) -> dict[str, Any]:
    """GET /openapi.json: Envoy answers with docs/openapi.json itself (read at start). Public, no
    transcoding, no tenant check (it is the same document for everyone)."""
    return {
        "name": "openapi",
        "match": {"path": OPENAPI_ROUTE, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "direct_response": {"status": 200, "body": {"filename": str(doc)}},
        "response_headers_to_add": [
            {
                "header": {"key": "content-type", "value": "application/json"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
        "typed_per_filter_config": {
            "envoy.filters.http.grpc_json_transcoder": _typed(
                "envoy.config.route.v3.FilterConfig", disabled=True
            ),
            RBAC_FILTER: _typed("envoy.extensions.filters.http.rbac.v3.RBACPerRoute"),
        },
    }


# -- the OpenAI-compatible API (LLMService's HTTP listener) -------------------------------------

OPENAI_CLUSTER = "llm_openai"
OPENAI_PREFIX = "/v1/"
OPENAI_ORG_HEADER = "openai-organization"


def _openai_route(settings: MeshSettings) -> dict[str, Any]:
    """/v1/* (OpenAI's paths) to LLMService's HTTP listener, untranscoded. jwt_authn has
    verified the token; RBAC lets the call through when it names no tenant (the token's is used)
    or names the token's own tenant in OpenAI-Organization. The service checks both again."""
    cel = CelBuilder()
    requested = cel.path("request", "headers", OPENAI_ORG_HEADER)
    own = cel.path("metadata", "filter_metadata", JWT_FILTER, JWT_PAYLOAD_KEY, TENANT_CLAIM)
    role = cel.path("metadata", "filter_metadata", JWT_FILTER, JWT_PAYLOAD_KEY, ROLE_CLAIM)
    # Tenant users only, as every LLM RPC behind /v1 admits (a platform-admin or service token
    # with a tenant claim is refused here as on the gRPC routes).
    tenant_user = functools.reduce(
        cel.or_, (cel.eq(role, cel.const(str(r))) for r in (Role.TENANT_ADMIN, Role.MEMBER))
    )
    no_org = {"not_rule": {"header": {"name": OPENAI_ORG_HEADER, "present_match": True}}}
    timeout = _seconds(unary_timeout(settings, "llm"))
    return {
        "name": "openai",
        "match": {"prefix": OPENAI_PREFIX},
        "route": {
            "cluster": OPENAI_CLUSTER,
            # Streams (SSE) run as long as they produce; the idle timeout ends a silent one.
            "timeout": "0s",
            "idle_timeout": timeout,
            "retry_policy": {"retry_on": "connect-failure,refused-stream", "num_retries": 2},
        },
        "typed_per_filter_config": {
            "envoy.filters.http.grpc_json_transcoder": _typed(
                "envoy.config.route.v3.FilterConfig", disabled=True
            ),
            RBAC_FILTER: _typed(
                "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
                rbac={
                    "rules": {
                        "action": "ALLOW",
                        "policies": {
                            "openai-token-tenant": {
                                "permissions": [no_org],
                                "principals": [{"any": True}],
                                "condition": _Flow(tenant_user.ast),
                            },
                            "openai-named-tenant": _policy(cel.and_(tenant_user, cel.eq(requested, own))),
                        },
                    }
                },
            ),
        },
    }


def _openai_cluster(settings: MeshSettings) -> dict[str, Any]:
    host = _upstream_host(settings.host)
    return {
        "name": OPENAI_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": OPENAI_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _socket(host, p)}} for p in settings.openai_ports()
                    ]
                }
            ],
        },
        # A replica that refuses connections (died, restarting) is skipped until it is back.
        "outlier_detection": {
            "consecutive_local_origin_failure": 2,
            "split_external_local_origin_errors": True,
            "interval": "1s",
            "base_ejection_time": "5s",
            "max_ejection_percent": 50,
        },
    }


def render(
    settings: MeshSettings,
    *,
    descriptor: Path = DESCRIPTOR_PATH,
    log_dir: Path | None = None,
    openapi: Path | None = None,
) -> dict[str, Any]:
    """The whole Envoy bootstrap as a dict (YAML/JSON-ready). With `openapi`, GET /openapi.json
    serves that file."""
    log_dir = log_dir if log_dir is not None else settings.home / "logs"
    methods = [m for m in public_methods(descriptor) if m.access is not Access.INTERNAL]
    ports = {name: settings.replica_ports(name) for name in ("tenant", "storage", "llm", "metering")}
    hcm = _typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="ingress",
        codec_type="AUTO",
        use_remote_address=True,
        # Client trace context is dropped before tracing and routing; request ids are Envoy's.
        early_header_mutation_extensions=_early_trace_header_removal(),
        generate_request_id=True,
        preserve_external_request_id=False,
        normalize_path=True,
        merge_slashes=True,
        path_with_escaped_slashes_action="KEEP_UNCHANGED",
        common_http_protocol_options={
            "headers_with_underscores_action": "DROP_HEADER",
            "idle_timeout": _seconds(settings.envoy_idle_connection_timeout_seconds),
        },
        # HTTP/1.1 REST clients get a grpc-status trailer when a stream fails after the first byte.
        http_protocol_options={"enable_trailers": True},
        http2_protocol_options={
            "initial_stream_window_size": MiB,
            "initial_connection_window_size": 4 * MiB,
            "max_concurrent_streams": settings.envoy_max_streams_per_connection,
        },
        stream_idle_timeout=_seconds(settings.envoy_stream_idle_timeout_seconds),
        request_headers_timeout=_seconds(settings.envoy_request_headers_timeout_seconds),
        request_timeout=_seconds(settings.envoy_request_timeout_seconds),
        access_log=_access_log(log_dir),
        # OpenTelemetry tracer (services/mesh/envoy_observability.py), when a collector is set.
        **(
            {"tracing": trace}
            if (trace := envoy_observability.tracing(settings, JWT_FILTER, JWT_PAYLOAD_KEY))
            else {}
        ),
        # Envoy's own answers as google.rpc.Status JSON (services/mesh/local_replies.py).
        local_reply_config=local_reply_config(),
        route_config={
            "name": "makoto",
            "virtual_hosts": [
                {
                    "name": "makoto",
                    "domains": ["*"],
                    "routes": [
                        *([_openapi_route(openapi)] if openapi is not None else []),
                        *(_route(settings, m) for m in methods),
                        _openai_route(settings),
                    ],
                }
            ],
            **({"max_direct_response_body_size_bytes": 4 * MiB} if openapi is not None else {}),
        },
        http_filters=[
            _header_mutation(),
            client_content_type_filter(),
            _bad_request_field(),
            _jwt_authn(
                settings,
                (
                    *((OPENAPI_ROUTE,) if openapi is not None else ()),
                    # A public download (GET): its REST path only; its gRPC path is a POST.
                    *(
                        p
                        for m in methods
                        if m.access is Access.PUBLIC and m.rest_verb == "get"
                        for p in m.rest_paths
                    ),
                ),
                tuple(
                    p
                    for m in methods
                    if m.access is Access.PUBLIC
                    for p in (m.grpc_path, *(m.rest_paths if m.rest_verb != "get" else ()))
                ),
            ),
            _strict_token(),
            *(_health_check(settings, path, clusters) for path, clusters in health_paths().items()),
            _json_body_limit(settings),
            _transcoder(settings, descriptor),
            _field_extraction(methods, descriptor),
            _rbac(),
            _router(),
        ],
    )
    clusters = [
        _with_upstream_tls(settings, _cluster(settings, name, port), name) for name, port in ports.items()
    ]
    # The OpenAI-compatible listener is LLMService's too (HTTP/1.1 over the same mTLS).
    clusters.append(_with_upstream_tls(settings, _openai_cluster(settings), "llm", ("http/1.1",)))
    clusters += [_jwks_cluster(p) for p in settings.jwt_providers() if p.jwks_path is None and p.jwks_url]
    clusters += envoy_observability.clusters(settings)
    stats = envoy_observability.stats_listener(settings)
    runtime = envoy_observability.runtime(settings)
    return {
        "node": {"id": "makoto-envoy", "cluster": "makoto"},
        "admin": admin(settings),
        "static_resources": {
            "listeners": [
                {
                    "name": "makoto",
                    "address": _socket(settings.host, settings.envoy_port),
                    "filter_chains": [
                        {
                            "filters": [
                                # Connections past the limit are closed at accept (the overload
                                # manager below is the process-wide backstop).
                                {
                                    "name": "envoy.filters.network.connection_limit",
                                    "typed_config": _typed(
                                        "envoy.extensions.filters.network.connection_limit.v3.ConnectionLimit",
                                        stat_prefix="ingress",
                                        max_connections=settings.envoy_max_connections,
                                    ),
                                },
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                },
                            ]
                        }
                    ],
                },
                *([stats] if stats is not None else []),
            ],
            "clusters": clusters,
        },
        **({"layered_runtime": runtime} if runtime is not None else {}),
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": _typed(
                        "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                        max_active_downstream_connections=max(10_000, settings.envoy_max_connections),
                    ),
                }
            ]
        },
    }


_HEADER = """\
# Envoy configuration of the MAKOTO mesh. GENERATED by services/mesh/envoy_config.py from
# MeshSettings; `makoto up` renders its own copy into <home>/envoy.yaml. Filters: envoy/README.md.
"""


class _Flow(dict[str, Any]):
    """A mapping written in YAML flow style (the CEL ASTs: long, and not meant to be read)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Flow, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)
)


def dump(config: dict[str, Any]) -> str:
    return _HEADER + yaml.dump(config, Dumper=_Dumper, sort_keys=False, width=100_000)


def write_config(
    settings: MeshSettings, path: Path | None = None, *, descriptor: Path = DESCRIPTOR_PATH
) -> Path:
    """Render into <home>/envoy.yaml (absolute paths) and return where it went."""
    home = settings.home.resolve()
    tls_dir = settings.tls_dir.resolve() if settings.tls_dir is not None else None
    resolved = settings.model_copy(update={"home": home, "tls_dir": tls_dir})
    target = path or home / "envoy.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    (home / "logs").mkdir(mode=0o700, parents=True, exist_ok=True)
    resolved.admin_socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    openapi = OPENAPI_DOC if OPENAPI_DOC.exists() else None
    target.write_text(
        dump(render(resolved, descriptor=descriptor.resolve(), log_dir=home / "logs", openapi=openapi))
    )
    return target


def reference_config() -> str:
    """The committed envoy/envoy.yaml: default settings whatever the environment says, paths
    relative to the repository root (run Envoy from there)."""
    defaults = MeshSettings.model_construct(home=Path(".makoto"))
    return dump(render(defaults, descriptor=Path("gen/makoto.binpb"), log_dir=Path(".makoto/logs")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", action="store_true", help="rewrite envoy/envoy.yaml")
    parser.add_argument("--out", type=Path, help="write here instead of <home>/envoy.yaml")
    args = parser.parse_args(argv)
    if args.reference:
        REFERENCE_PATH.write_text(reference_config())
        print(REFERENCE_PATH)
        return 0
    print(write_config(MeshSettings(), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
