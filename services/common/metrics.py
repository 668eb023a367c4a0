"""Prometheus metrics of one service process, served on its own port (MAKOTO_METRICS_PORTS).

RED per method and status, per-tenant requests and usage, rate-limit refusals and adapter cache
sizes live here; the usage spool's gauges (services/common/metering_client.py) and the limits'
Redis fallback (services/common/limits/counters.py) register on the same default registry.

Label cardinality is bounded: `method` and `code` come from the protos and gRPC, and `tenant` is
the tenant id for the first `metrics_max_tenants` tenants a process sees and "_other" after that
(a fleet with more tenants than that reads per-tenant figures from MeteringService's usage
queries, which are exact; these counters are for dashboards and alerts).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import grpc
import structlog
from prometheus_client import Counter, Gauge, Histogram, start_http_server

from services.common.config import MeshSettings

log = structlog.get_logger("makoto.metrics")

OTHER_TENANTS = "_other"

REQUESTS = Counter(
    "makoto_rpc_requests",
    "Completed RPCs by method and final gRPC status",
    ["service", "method", "code"],
)
# Buckets around the SLO (p95 < 200 ms): the 0.2 s edge is exact, so the SLO query needs no
# interpolation.
DURATION = Histogram(
    "makoto_rpc_duration_seconds",
    "RPC duration in the service (auth, validation, handler, metering)",
    ["service", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
TENANT_REQUESTS = Counter(
    "makoto_tenant_requests",
    "Completed tenant RPCs by tenant (bounded: see OTHER_TENANTS) and final gRPC status",
    ["service", "tenant", "code"],
)
TENANT_USAGE = Counter(
    "makoto_tenant_usage",
    "Usage recorded by this process, by tenant (bounded) and meter, in the meter's unit",
    ["tenant", "meter"],
)
RATE_LIMITED = Counter(
    "makoto_rate_limit_refusals",
    "Calls refused by a tenant's API rate limit",
    ["service", "tenant", "rate_class"],
)
ADAPTER_CACHE = Gauge(
    "makoto_adapter_cache_entries",
    "Backend adapters (clients) held for tenants, by cache",
    ["cache"],
)


class TenantLabels:
    """The `tenant` label: the id for the first `limit` tenants seen, OTHER_TENANTS after."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()  # the limits' thread and the event loop both count

    def __call__(self, tenant_id: str) -> str:
        if tenant_id in self._seen:
            return tenant_id
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(tenant_id)
                return tenant_id
        return OTHER_TENANTS


tenant_label = TenantLabels(200)

# (service, method, code) -> (requests child, duration child): labels() costs a dict lookup and
# a lock per call; a call's path is the same few combinations over and over.
_children: dict[tuple[str, str, grpc.StatusCode], tuple[Any, Any]] = {}
_tenant_children: dict[tuple[str, str, grpc.StatusCode], Any] = {}


def observe_call(
    service: str, method: str, code: grpc.StatusCode, seconds: float, tenant: str | None
) -> None:
    key = (service, method, code)
    children = _children.get(key)
    if children is None:
        name = method.rsplit("/", 1)[-1]
        children = (REQUESTS.labels(service, name, code.name), DURATION.labels(service, name))
        _children[key] = children
    children[0].inc()
    children[1].observe(seconds)
    if tenant:
        # Keyed by the bounded label, so this cache is bounded too.
        tkey = (service, tenant_label(tenant), code)
        child = _tenant_children.get(tkey)
        if child is None:
            child = _tenant_children[tkey] = TENANT_REQUESTS.labels(tkey[0], tkey[1], code.name)
        child.inc()


def usage(tenant_id: str, meter: str, value: int) -> None:
    TENANT_USAGE.labels(tenant_label(tenant_id), meter).inc(value)


def rate_limited(service: str, tenant_id: str, rate_class: str | None) -> None:
    RATE_LIMITED.labels(service, tenant_label(tenant_id), rate_class or "api").inc()


def watch_cache(name: str, size: Callable[[], int]) -> None:
    """Report `size()` as the cache's entry count at every scrape."""
    ADAPTER_CACHE.labels(name).set_function(lambda: float(size()))


class MetricsServer:
    """GET /metrics on the process's metrics port (a thread of prometheus_client's)."""

    def __init__(self, settings: MeshSettings, service: str) -> None:
        self._port = settings.metrics_port(service)
        self._host = settings.host
        self._server: Any = None
        tenant_label.limit = settings.metrics_max_tenants

    def start(self) -> None:
        if self._port is None:
            return
        self._server, _thread = start_http_server(self._port, addr=self._host)
        log.info("metrics", address=f"{self._host}:{self._port}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
