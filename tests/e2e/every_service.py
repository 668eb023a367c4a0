"""One tenant-scoped read per service, through Envoy (REST) and on the service's own port (gRPC):
what the token-lifecycle tests call to see a token accepted or refused everywhere."""

from __future__ import annotations

import grpc
import httpx
from makoto.llm.v1 import llm_pb2, llm_pb2_grpc
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.storage.v1 import objects_pb2, storage_service_pb2_grpc
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from tests.mesh_fixture import RunningMesh

SERVICES = ("tenant", "storage", "llm", "metering")


def rest_path(service: str, tenant: str) -> str:
    return {
        "tenant": f"/api/v1/tenants/{tenant}",
        "storage": f"/api/v1/tenants/{tenant}/objects",
        "llm": f"/api/v1/tenants/{tenant}/models",
        "metering": f"/api/v1/tenants/{tenant}/limits",
    }[service]


async def grpc_code(mesh: RunningMesh, service: str, tenant: str, token: str) -> grpc.StatusCode:
    """The status of the service's read on its own port (mTLS, bypassing Envoy)."""
    md = (("authorization", f"Bearer {token}"),)
    async with mesh.channel(mesh.address(service)) as ch:
        try:
            if service == "tenant":
                await tenant_pb2_grpc.TenantServiceStub(ch).GetTenant(
                    tenant_pb2.GetTenantRequest(tenant_id=tenant), metadata=md, timeout=10
                )
            elif service == "storage":
                await storage_service_pb2_grpc.StorageServiceStub(ch).ListObjects(
                    objects_pb2.ListObjectsRequest(tenant_id=tenant), metadata=md, timeout=10
                )
            elif service == "llm":
                await llm_pb2_grpc.LLMServiceStub(ch).ListModels(
                    llm_pb2.ListModelsRequest(tenant_id=tenant), metadata=md, timeout=10
                )
            else:
                await metering_pb2_grpc.MeteringServiceStub(ch).GetTenantLimits(
                    metering_pb2.GetTenantLimitsRequest(tenant_id=tenant), metadata=md, timeout=10
                )
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK


async def statuses(
    mesh: RunningMesh, http: httpx.AsyncClient, tenant: str, token: str
) -> dict[str, tuple[int, grpc.StatusCode]]:
    """service -> (HTTP status through Envoy, gRPC status on its own port)."""
    out: dict[str, tuple[int, grpc.StatusCode]] = {}
    for service in SERVICES:
        r = await http.get(rest_path(service, tenant), headers={"authorization": f"Bearer {token}"})
        out[service] = (r.status_code, await grpc_code(mesh, service, tenant, token))
    return out


def reasons(body: httpx.Response) -> str:
    """The ErrorInfo reason(s) of a REST error answer (google.rpc.Status JSON)."""
    try:
        details = body.json().get("details", [])
    except ValueError:
        return ""
    return ",".join(str(d.get("reason", "")) for d in details if "reason" in d)
