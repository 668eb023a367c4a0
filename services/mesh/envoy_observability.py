"""Envoy's part in observing the mesh (README "Observing"), rendered into the bootstrap by
services/mesh/envoy_config.py:

* Tracing: the OpenTelemetry tracer on the ingress connection manager, exporting OTLP/gRPC to
  MAKOTO_OTLP_ENDPOINT. Envoy starts (or continues) the W3C trace and sends `traceparent` to the
  service, whose server span joins it. The span carries `tenant.id` from the verified token.
* Stats: a listener of its own (MAKOTO_METRICS_PORTS["envoy"]) that answers GET /metrics with the
  admin interface's /stats/prometheus, so Prometheus never needs the admin port (which also
  answers POST /quitquitquit) and scrapes the same way wherever admin itself listens.
"""

from __future__ import annotations

from typing import Any

from services.common.config import MeshSettings
from services.common.identity import TENANT_CLAIM

COLLECTOR_CLUSTER = "otlp_collector"
ADMIN_CLUSTER = "envoy_admin"
STATS_PATH = "/metrics"


def _typed(type_name: str, **body: Any) -> dict[str, Any]:
    return {"@type": f"type.googleapis.com/{type_name}", **body}


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _host_port(endpoint: str) -> tuple[str, int]:
    text = endpoint.split("://", 1)[-1].rstrip("/")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"MAKOTO_OTLP_ENDPOINT must be host:port, got {endpoint!r}")
    return host, int(port)


def tracing(settings: MeshSettings, jwt_filter: str, payload_key: str) -> dict[str, Any] | None:
    """The connection manager's `tracing` block (None: tracing off)."""
    if not settings.otlp_endpoint:
        return None
    return {
        "random_sampling": {"value": settings.trace_sample_percent},
        "custom_tags": [
            {
                # The tenant of the verified token (jwt_authn's payload in dynamic metadata).
                "tag": "tenant.id",
                "metadata": {
                    "kind": {"request": {}},
                    "metadata_key": {
                        "key": jwt_filter,
                        "path": [{"key": payload_key}, {"key": TENANT_CLAIM}],
                    },
                },
            }
        ],
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": _typed(
                "envoy.config.trace.v3.OpenTelemetryConfig",
                grpc_service={"envoy_grpc": {"cluster_name": COLLECTOR_CLUSTER}, "timeout": "2s"},
                service_name="makoto-envoy",
            ),
        },
    }


def clusters(settings: MeshSettings) -> list[dict[str, Any]]:
    """The collector's cluster (tracing on) and the admin cluster (Envoy stats listener on)."""
    out: list[dict[str, Any]] = []
    if settings.otlp_endpoint:
        host, port = _host_port(settings.otlp_endpoint)
        out.append(
            {
                "name": COLLECTOR_CLUSTER,
                "type": "STRICT_DNS",
                "dns_lookup_family": "V4_PREFERRED",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": COLLECTOR_CLUSTER,
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _socket(host, port)}}]}],
                },
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": _typed(
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        explicit_http_config={"http2_protocol_options": {}},
                    )
                },
            }
        )
    if settings.metrics_ports.get("envoy"):
        out.append(
            {
                "name": ADMIN_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": ADMIN_CLUSTER,
                    "endpoints": [
                        {
                            "lb_endpoints": [
                                {"endpoint": {"address": {"pipe": {"path": str(settings.admin_socket_path)}}}}
                            ]
                        }
                    ],
                },
            }
        )
    return out


def stats_listener(settings: MeshSettings) -> dict[str, Any] | None:
    """GET /metrics -> admin's /stats/prometheus, on its own port (None: not configured)."""
    port = settings.metrics_ports.get("envoy")
    if not port:
        return None
    hcm = _typed(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        stat_prefix="stats",
        codec_type="AUTO",
        route_config={
            "name": "stats",
            "virtual_hosts": [
                {
                    "name": "stats",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {
                                "path": STATS_PATH,
                                "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
                            },
                            "route": {"cluster": ADMIN_CLUSTER, "prefix_rewrite": "/stats/prometheus"},
                        }
                    ],
                }
            ],
        },
        http_filters=[
            {
                "name": "envoy.filters.http.router",
                "typed_config": _typed("envoy.extensions.filters.http.router.v3.Router"),
            }
        ],
    )
    return {
        "name": "stats",
        "address": _socket(settings.host, port),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def runtime(settings: MeshSettings) -> dict[str, Any] | None:
    """Envoy's OpenTelemetry tracer flushes every 5 s by default; follow the services' setting."""
    if not settings.otlp_endpoint:
        return None
    return {
        "layers": [
            {
                "name": "tracing",
                "static_layer": {
                    "tracing.opentelemetry.flush_interval_ms": int(settings.otlp_flush_seconds * 1000),
                    "tracing.opentelemetry.min_flush_spans": 16,
                },
            }
        ]
    }
