"""Tenants for the benchmarks, created through TenantService (platform-admin token) with their
bindings; credentials go into the mesh's local secret store and bindings name them as
local://<name>, as an operator would do it."""

from __future__ import annotations

import asyncio
import sys
import uuid

import grpc
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.identity import Role
from services.common.secrets import LocalSecretStore
from tests.bench.mesh import BenchMesh
from tests.support import direct_channel


def tenant_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def store_secret(mesh: BenchMesh, name: str, value: str, tid: str) -> str:
    """Put tenant `tid`'s secret in the mesh's local store; returns its reference (bindings may
    only name their own tenant's secrets: local://tenants/<tid>/<name>)."""
    scoped = f"tenants/{tid}/{name}"
    LocalSecretStore(mesh.settings).set(scoped, value)
    return f"local://{scoped}"


async def create_tenant(
    mesh: BenchMesh,
    prefix: str,
    *,
    cloud: tenant_pb2.CloudProvider = tenant_pb2.CLOUD_PROVIDER_LOCAL,
    object_store: tenant_pb2.ObjectStoreBinding | None = None,
    item_store: tenant_pb2.ItemStoreBinding | None = None,
    llm: tenant_pb2.LlmBinding | None = None,
    tid: str = "",
) -> str:
    """An ACTIVE tenant; absent bindings are the embedded defaults (local objects, SQLite items)."""
    tid = tid or tenant_id(prefix)
    bindings = tenant_pb2.TenantBindings()
    if object_store is not None:
        bindings.object_store.CopyFrom(object_store)
    if item_store is not None:
        bindings.item_store.CopyFrom(item_store)
    if llm is not None:
        bindings.llm.CopyFrom(llm)
    async with direct_channel(mesh.address("tenant")) as channel:
        stub = tenant_pb2_grpc.TenantServiceStub(channel)
        tenant = await stub.CreateTenant(
            tenant_pb2.CreateTenantRequest(
                tenant=tenant_pb2.Tenant(
                    tenant_id=tid, display_name=tid, cloud_provider=cloud, bindings=bindings
                ),
                request_id=uuid.uuid4().hex,
            ),
            metadata=mesh.metadata(Role.PLATFORM_ADMIN),
        )
    if tenant.state != tenant_pb2.TENANT_STATE_ACTIVE:
        raise RuntimeError(
            f"tenant {tid} is {tenant_pb2.TenantState.Name(tenant.state)}: {tenant.state_reason}"
        )
    # Benchmarks measure the platform, not a plan: rates far above what this box can serve.
    await set_limits(mesh, tid, api_rps=1_000_000)
    return tid


async def set_limits(mesh: BenchMesh, tid: str, *, api_rps: float) -> None:
    """The tenant's API (and every class's) rate: api_rps per second with a burst of the same."""
    rate = metering_pb2.RateLimit(requests_per_second=api_rps, burst=max(1, int(api_rps)))
    request = metering_pb2.SetTenantLimitsRequest(
        tenant_id=tid, overrides=metering_pb2.PlanLimits(api=rate, reads=rate, writes=rate, llm=rate)
    )
    async with direct_channel(mesh.address("metering")) as channel:
        stub = metering_pb2_grpc.MeteringServiceStub(channel)
        for attempt in range(4):
            try:
                await stub.SetTenantLimits(request, metadata=mesh.metadata(Role.PLATFORM_ADMIN))
                return
            except grpc.aio.AioRpcError as err:
                # Seen once after the heavy sections: INTERNAL from MeteringService (cause not yet
                # pinned down; see the stop note). Said on stderr, retried, never silently skipped.
                if attempt == 3 or err.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE):
                    raise
                log = mesh.settings.home / "logs" / "metering.log"
                tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
                what = f"SetTenantLimits for {tid}: {err.code().name}, retrying"
                print(what, *tail, sep="\n", file=sys.stderr)
                await asyncio.sleep(2.0)
