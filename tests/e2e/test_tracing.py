"""One trace across every hop: a REST call through Envoy yields ONE trace holding Envoy's span,
the service's, the downstream services' (TenantDirectory, MeteringService limits) and the
backend's (the LLM SDK's HTTP call to the simulator), every one carrying tenant.id."""

from __future__ import annotations

import httpx
import pytest

from services.common.identity import Role
from tests.e2e.test_flows_rest import API, new_tenant_id
from tests.observed_fixture import ObservedMesh
from tests.otlp_receiver import ReceivedSpan

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

SERVER, CLIENT = 2, 3  # OTLP span kinds


def _envoy_span(spans: list[ReceivedSpan], tenant: str) -> ReceivedSpan | None:
    for span in spans:
        if span.service == "makoto-envoy" and span.attributes.get("tenant.id") == tenant:
            return span
    return None


def test_one_rest_call_is_one_trace_across_every_hop(observed: ObservedMesh) -> None:
    mesh, receiver = observed.mesh, observed.receiver
    tenant = new_tenant_id("trace")
    with httpx.Client(base_url=mesh.base_url, timeout=30) as client:
        r = client.post(
            f"{API}/admin/tenants", json={"tenantId": tenant}, headers=mesh.headers(Role.PLATFORM_ADMIN)
        )
        assert r.status_code == 200, r.text
        # The tenant's first call: the LLM replica has neither its directory entry nor its
        # limits yet, so it asks TenantService and MeteringService within this call.
        r = client.post(
            f"{API}/tenants/{tenant}/chat/completions",
            json={"messages": [{"role": "user", "content": "trace me"}]},
            headers=mesh.headers(Role.MEMBER, tenant),
        )
        assert r.status_code == 200, r.text

    def complete(spans: list[ReceivedSpan]) -> bool:
        edge = _envoy_span(spans, tenant)
        if edge is None:
            return False
        mine = [s for s in spans if s.trace_id == edge.trace_id]
        servers = {s.service for s in mine if s.kind == SERVER}
        # Each process exports on its own schedule: wait for the last of them.
        return {"makoto-llm", "makoto-tenant", "makoto-metering"} <= servers and any(
            s.kind == CLIENT and ("http.url" in s.attributes or "url.full" in s.attributes) for s in mine
        )

    spans = receiver.wait_for(complete)
    edge = _envoy_span(spans, tenant)
    assert edge is not None
    trace = [s for s in spans if s.trace_id == edge.trace_id]
    by_id = {s.span_id: s for s in trace}

    # Envoy roots the trace; the LLM service's server span is its child.
    assert edge.parent_id == "" and edge.kind == SERVER, edge
    llm = [s for s in trace if s.service == "makoto-llm" and s.kind == SERVER]
    assert [s.name for s in llm] == ["makoto.llm.v1.LLMService/CreateChatCompletion"]
    assert llm[0].parent_id == edge.span_id

    # Downstream services: their server spans hang under client spans in this trace -- the LLM
    # service's (MeteringService may ask the directory about the tenant too, one hop further).
    for service, method in (
        ("makoto-tenant", "makoto.tenant.v1.TenantDirectoryService/ResolveTenant"),
        ("makoto-metering", "makoto.metering.v1.MeteringService/GetTenantLimits"),
    ):
        servers = [s for s in trace if s.service == service and s.name == method and s.kind == SERVER]
        assert servers, (service, [(s.service, s.name) for s in trace])
        callers = {by_id[s.parent_id].service for s in servers}
        # The LLM service asks the directory itself unless its cache already holds the tenant (the
        # NATS push of the new tenant can warm it first); MeteringService asks in any case.
        assert callers & {"makoto-llm", "makoto-metering"} and callers <= {"makoto-llm", "makoto-metering"}, (
            callers
        )
        for server in servers:
            client_span = by_id[server.parent_id]
            assert client_span.kind == CLIENT and client_span.name == method, client_span

    # The backend: the OpenAI SDK's HTTP request to the simulator, inside the LLM call.
    backend = [
        s for s in trace if s.kind == CLIENT and ("http.url" in s.attributes or "url.full" in s.attributes)
    ]
    assert backend, [(s.service, s.name) for s in trace]
    url = str(backend[0].attributes.get("url.full") or backend[0].attributes.get("http.url"))
    assert url.endswith("/chat/completions"), url

    # One trace: every span of this call is in it, and every span carries the tenant.
    assert len({s.trace_id for s in trace}) == 1
    missing = [(s.service, s.name) for s in trace if s.attributes.get("tenant.id") != tenant]
    assert not missing, f"spans without tenant.id={tenant}: {missing}"
    # Nothing of this call leaked into another trace: its server spans are all here.
    others = [
        s
        for s in spans
        if s.trace_id != edge.trace_id
        and s.attributes.get("tenant.id") == tenant
        and s.name.endswith("/CreateChatCompletion")
    ]
    assert not others, others
