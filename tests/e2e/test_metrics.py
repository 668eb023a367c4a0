"""Prometheus metrics: each service's /metrics (and Envoy's, through its stats listener) after a
few REST calls, with counters moved by exactly the calls made."""

from __future__ import annotations

import json
import os
import re
import time

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from services.common.identity import Role
from services.mesh.envoy_config import REPO_ROOT
from tests.e2e.test_flows_rest import API, new_tenant_id
from tests.observed_fixture import ObservedMesh

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(observed: ObservedMesh, component: str) -> Samples:
    r = httpx.get(observed.metrics_url(component), timeout=10)
    assert r.status_code == 200, r.text
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_service_and_envoy_metrics_count_the_calls(observed: ObservedMesh) -> None:
    mesh = observed.mesh
    tenant = new_tenant_id("metrics")
    admin = mesh.headers(Role.PLATFORM_ADMIN)
    member = mesh.headers(Role.TENANT_ADMIN, tenant)
    root = f"{API}/tenants/{tenant}"
    with httpx.Client(base_url=mesh.base_url, timeout=30) as c:
        assert c.post(f"{API}/admin/tenants", json={"tenantId": tenant}, headers=admin).status_code == 200
        # Writes: a burst of 2, then (almost) nothing: the third quick write is refused.
        r = c.put(
            f"{API}/admin/tenants/{tenant}/limits",
            json={"writes": {"requestsPerSecond": 0.01, "burst": 2}},
            headers=admin,
        )
        assert r.status_code == 200, r.text
        before = {c_: scrape(observed, c_) for c_ in ("tenant", "storage", "llm", "metering", "envoy")}

        for _ in range(3):
            assert c.get(root, headers=member).status_code == 200
        # Writes until three are refused. The storage replica normally has the tenant's limits at
        # its first call; on a loaded machine that lookup may time out (safe defaults for a TTL),
        # so the loop does not assume when refusals start -- the counters must match what it saw.
        puts: list[int] = []
        deadline = time.monotonic() + 30
        while puts.count(429) < 3 and time.monotonic() < deadline:
            r = c.put(f"{root}/objects/k{len(puts)}", content=os.urandom(100), headers=member)
            puts.append(r.status_code)
            if r.status_code == 200 and len(puts) > 2:
                time.sleep(0.2)
        ok, refused = puts.count(200), puts.count(429)
        assert refused == 3 and ok + refused == len(puts) and ok >= 2, puts
        assert c.get(f"{root}/objects/missing", headers=member).status_code == 404
        r = c.post(
            f"{root}/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}, headers=member
        )
        assert r.status_code == 200, r.text
        usage = r.json()["usage"]
        assert c.get(f"{root}/usage", params={"meter": "api_calls"}, headers=member).status_code == 200

    after = {c_: scrape(observed, c_) for c_ in ("tenant", "storage", "llm", "metering", "envoy")}

    def moved(component: str, name: str, **labels: str) -> float:
        return value(after[component], name, **labels) - value(before[component], name, **labels)

    # RED per method and status.
    assert moved("tenant", "makoto_rpc_requests_total", service="tenant", method="GetTenant", code="OK") == 3
    assert moved("tenant", "makoto_rpc_duration_seconds_count", service="tenant", method="GetTenant") == 3
    storage = {"service": "storage", "method": "PutObjectContent"}
    assert moved("storage", "makoto_rpc_requests_total", **storage, code="OK") == ok
    assert moved("storage", "makoto_rpc_requests_total", **storage, code="RESOURCE_EXHAUSTED") == refused
    assert (
        moved(
            "storage",
            "makoto_rpc_requests_total",
            service="storage",
            method="GetObjectContent",
            code="NOT_FOUND",
        )
        == 1
    )
    assert (
        moved("llm", "makoto_rpc_requests_total", service="llm", method="CreateChatCompletion", code="OK")
        == 1
    )
    assert (
        moved("metering", "makoto_rpc_requests_total", service="metering", method="QueryUsage", code="OK")
        == 1
    )
    # Latency: every call landed in some bucket, and the +Inf bucket equals the count.
    count = value(
        after["llm"], "makoto_rpc_duration_seconds_count", service="llm", method="CreateChatCompletion"
    )
    inf = value(
        after["llm"],
        "makoto_rpc_duration_seconds_bucket",
        service="llm",
        method="CreateChatCompletion",
        le="+Inf",
    )
    assert count == inf >= 1

    # Per tenant: requests by status, usage by meter, rate-limit refusals.
    tenant_storage = {"service": "storage", "tenant": tenant}
    assert moved("storage", "makoto_tenant_requests_total", **tenant_storage, code="OK") == ok
    assert (
        moved("storage", "makoto_tenant_requests_total", **tenant_storage, code="RESOURCE_EXHAUSTED")
        == refused
    )
    assert moved("storage", "makoto_tenant_requests_total", **tenant_storage, code="NOT_FOUND") == 1
    assert (
        moved("storage", "makoto_rate_limit_refusals_total", **tenant_storage, rate_class="writes") == refused
    )
    # Refused calls are not billed; served ones (the 404 included) are.
    assert moved("storage", "makoto_tenant_usage_total", tenant=tenant, meter="api_calls") == ok + 1
    assert moved("llm", "makoto_tenant_usage_total", tenant=tenant, meter="llm_prompt_tokens") == int(
        usage["promptTokens"]
    )
    assert moved("llm", "makoto_tenant_usage_total", tenant=tenant, meter="llm_completion_tokens") == int(
        usage["completionTokens"]
    )

    # Spool depth and adapter caches are reported.
    assert ("makoto_usage_spool_events", frozenset({("source", "storage")})) in after["storage"]
    assert value(after["storage"], "makoto_adapter_cache_entries", cache="storage_objects") >= 1
    assert value(after["llm"], "makoto_adapter_cache_entries", cache="llm_providers") >= 1

    # Envoy's own stats, through its stats listener: the calls reached the clusters.
    storage_rq = moved("envoy", "envoy_cluster_upstream_rq_total", envoy_cluster_name="storage")
    assert storage_rq == len(puts) + 1, storage_rq
    assert moved("envoy", "envoy_cluster_upstream_rq_total", envoy_cluster_name="llm") == 1


def _queries() -> list[str]:
    """Every PromQL expression of the dashboard and the SLO rules."""
    observability = REPO_ROOT / "deploy" / "observability"
    dashboard = json.loads((observability / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    rules = yaml.safe_load((observability / "slo-rules.yml").read_text())
    exprs += [r["expr"] for group in rules["groups"] for r in group["rules"]]
    assert len(exprs) > 20
    return exprs


def test_dashboard_and_rules_query_only_what_the_mesh_exports(observed: ObservedMesh) -> None:
    """A renamed metric or label would leave a panel silently empty: every name the dashboard and
    the alert rules use is one the services or Envoy export (after some traffic)."""
    mesh = observed.mesh
    tenant = new_tenant_id("dash")
    with httpx.Client(base_url=mesh.base_url, timeout=30) as c:
        r = c.post(
            f"{API}/admin/tenants", json={"tenantId": tenant}, headers=mesh.headers(Role.PLATFORM_ADMIN)
        )
        assert r.status_code == 200, r.text
        member = mesh.headers(Role.TENANT_ADMIN, tenant)
        assert c.put(f"{API}/tenants/{tenant}/objects/a", content=b"x", headers=member).status_code == 200
    known: set[str] = set()
    for component in ("tenant", "storage", "llm", "metering", "envoy"):
        for name, labels in scrape(observed, component):
            # The parser names every counter sample *_total; Envoy's own names may not end so.
            known.update((name, name.removesuffix("_total")))
            known.update(label for label, _ in labels)
    used = {m for expr in _queries() for m in re.findall(r"\b((?:makoto|envoy)_[a-z0-9_]+)\b", expr)}
    assert used - known == set(), sorted(used - known)
