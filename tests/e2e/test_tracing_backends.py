"""Traces reach into the tenants' own backends: a REST call through Envoy for a tenant whose
objects live in S3 (a moto server) and whose items live in PostgreSQL yields one trace holding
Envoy's span, StorageService's and the backend client's -- the AWS SDK's span (aiobotocore) for
the object, asyncpg's for the item -- each carrying tenant.id."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable

import httpx
import pytest

from services.common.identity import Role
from services.common.secrets import LocalSecretStore
from tests.contract import emulators
from tests.e2e.multi_cloud_support import postgres_database
from tests.e2e.test_flows_rest import API
from tests.observed_fixture import ObservedMesh
from tests.otlp_receiver import ReceivedSpan

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SERVER, CLIENT = 2, 3  # OTLP span kinds


def is_aws(span: ReceivedSpan) -> bool:
    return span.attributes.get("rpc.system") == "aws-api"


def is_postgres(span: ReceivedSpan) -> bool:
    system = span.attributes.get("db.system") or span.attributes.get("db.system.name")
    return system == "postgresql"


def backend_trace(
    spans: list[ReceivedSpan], tenant: str, method: str, backend: Callable[[ReceivedSpan], bool]
) -> list[ReceivedSpan] | None:
    """The trace of the tenant's `method` call that holds a backend span, once Envoy's span is
    in too (each process exports on its own schedule)."""
    for server in spans:
        if (
            server.service != "makoto-storage"
            or server.kind != SERVER
            or not server.name.endswith(f"/{method}")
        ):
            continue
        if server.attributes.get("tenant.id") != tenant:
            continue
        trace = [s for s in spans if s.trace_id == server.trace_id]
        if any(backend(s) for s in trace) and any(s.service == "makoto-envoy" for s in trace):
            return trace
    return None


def ancestors(span: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> list[ReceivedSpan]:
    chain: list[ReceivedSpan] = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


async def test_s3_and_postgresql_calls_are_spans_of_the_rest_calls_trace(observed: ObservedMesh) -> None:
    mesh, receiver = observed.mesh, observed.receiver
    tenant = f"trace-be-{uuid.uuid4().hex[:8]}"
    moto = await asyncio.to_thread(emulators.start_moto)
    try:
        async with postgres_database() as dsn:
            secrets = LocalSecretStore(mesh.settings)
            secrets.set(f"tenants/{tenant}/s3", json.dumps(emulators.MOTO_CREDENTIALS))
            secrets.set(f"tenants/{tenant}/pg", "pg-password-not-checked-by-trust")  # trust auth
            body = {
                "tenantId": tenant,
                "cloudProvider": "CLOUD_PROVIDER_CUSTOM",
                "bindings": {
                    "objectStore": {
                        "backend": "OBJECT_BACKEND_S3",
                        "endpoint": moto.endpoint,
                        "region": "us-east-1",
                        "pathStyle": True,
                        "credentialsSecretRef": f"local://tenants/{tenant}/s3",
                        "options": {"auto_provision": "true"},
                    },
                    "itemStore": {
                        "backend": "ITEM_BACKEND_POSTGRES",
                        "endpoint": dsn,
                        "credentialsSecretRef": f"local://tenants/{tenant}/pg",
                        "options": {"auto_provision": "true"},
                    },
                },
            }
            member = mesh.headers(Role.MEMBER, tenant)
            root = f"{API}/tenants/{tenant}"
            async with httpx.AsyncClient(base_url=mesh.base_url, timeout=60) as client:
                r = await client.post(
                    f"{API}/admin/tenants", json=body, headers=mesh.headers(Role.PLATFORM_ADMIN)
                )
                assert r.status_code == 200, r.text
                r = await client.put(
                    f"{root}/objects/traced.txt",
                    content=b"traced into S3",
                    headers={**member, "content-type": "text/plain"},
                )
                assert r.status_code == 200, r.text
                r = await client.put(
                    f"{root}/collections/traced/partitions/p/items/s",
                    json={"attributes": {"n": {"stringValue": "traced into PostgreSQL"}}},
                    headers=member,
                )
                assert r.status_code == 200, r.text

            for method, backend, what in (
                ("PutObjectContent", is_aws, "S3 (aiobotocore)"),
                ("PutItem", is_postgres, "PostgreSQL (asyncpg)"),
            ):
                spans = await asyncio.to_thread(
                    receiver.wait_for,
                    lambda got, m=method, b=backend: backend_trace(got, tenant, m, b) is not None,  # type: ignore[misc]
                    60.0,
                )
                trace = backend_trace(spans, tenant, method, backend)
                assert trace is not None, what
                by_id = {s.span_id: s for s in trace}
                [server] = [
                    s
                    for s in trace
                    if s.service == "makoto-storage" and s.kind == SERVER and s.name.endswith(method)
                ]
                calls = [s for s in trace if backend(s)]
                assert calls, (what, [(s.service, s.name) for s in trace])
                for call in calls:
                    # The backend's span is the storage service's, inside its server span, and
                    # carries the tenant the call was authorised for.
                    assert call.service == "makoto-storage", (what, call)
                    assert call.kind == CLIENT, (what, call)
                    assert server in ancestors(call, by_id), (what, call.name)
                    assert call.attributes.get("tenant.id") == tenant, (what, call.name, call.attributes)
                # Envoy's span roots the trace and the storage server span hangs under it.
                [edge] = [s for s in trace if s.service == "makoto-envoy"]
                assert edge.parent_id == "" and server.parent_id == edge.span_id, (edge, server)
                if backend is is_aws:
                    assert {c.attributes.get("rpc.method") for c in calls} >= {"PutObject"}, calls
                    assert {c.attributes.get("rpc.service") for c in calls} == {"S3"}, calls
                missing = [(s.service, s.name) for s in trace if s.attributes.get("tenant.id") != tenant]
                assert not missing, f"{what}: spans without tenant.id={tenant}: {missing}"
    finally:
        moto.stop()
