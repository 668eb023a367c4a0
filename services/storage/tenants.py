"""Where StorageService learns a tenant's state and bindings.

Production: services.common.directory_client.TenantDirectory (TenantDirectoryService over
gRPC, briefly cached). Tests, benchmarks and single-tenant tools: StaticTenantResolver with
fixed bindings, no TenantService needed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Protocol

from makoto.tenant.v1 import directory_pb2, tenant_pb2

from services.common.errors import FailedPrecondition, NotFound, PermissionDenied


class TenantResolver(Protocol):
    async def require_active(self, tenant_id: str) -> directory_pb2.ResolveTenantResponse:
        """The tenant's bindings and etag; PermissionDenied if suspended, NotFound if unknown
        or deleted, FailedPrecondition if otherwise not active."""
        ...


def local_bindings() -> tenant_pb2.TenantBindings:
    """The embedded defaults: local objects, SQLite items."""
    return tenant_pb2.TenantBindings(
        object_store=tenant_pb2.ObjectStoreBinding(backend=tenant_pb2.OBJECT_BACKEND_LOCAL),
        item_store=tenant_pb2.ItemStoreBinding(backend=tenant_pb2.ITEM_BACKEND_SQLITE),
    )


class StaticTenantResolver:
    """Fixed tenants held in memory. The etag changes whenever state or bindings change, as the
    real directory's does, so cached adapters are rebuilt."""

    def __init__(self, tenants: Mapping[str, tenant_pb2.TenantBindings | None] | None = None) -> None:
        self._tenants: dict[str, directory_pb2.ResolveTenantResponse] = {}
        for tenant_id, bindings in (tenants or {}).items():
            self.set(tenant_id, bindings)

    def set(
        self,
        tenant_id: str,
        bindings: tenant_pb2.TenantBindings | None = None,
        state: tenant_pb2.TenantState = tenant_pb2.TENANT_STATE_ACTIVE,
    ) -> None:
        answer = directory_pb2.ResolveTenantResponse(
            tenant_id=tenant_id,
            state=state,
            bindings=bindings if bindings is not None else local_bindings(),
        )
        answer.etag = hashlib.sha256(answer.SerializeToString(deterministic=True)).hexdigest()[:16]
        self._tenants[tenant_id] = answer

    def remove(self, tenant_id: str) -> None:
        self._tenants.pop(tenant_id, None)

    async def require_active(self, tenant_id: str) -> directory_pb2.ResolveTenantResponse:
        answer = self._tenants.get(tenant_id)
        if answer is None or answer.state in (
            tenant_pb2.TENANT_STATE_DELETED,
            tenant_pb2.TENANT_STATE_DELETING,
        ):
            raise NotFound(f"tenant {tenant_id} not found", reason="TENANT_NOT_FOUND")
        if answer.state == tenant_pb2.TENANT_STATE_SUSPENDED:
            raise PermissionDenied(f"tenant {tenant_id} is suspended", reason="TENANT_SUSPENDED")
        if answer.state != tenant_pb2.TENANT_STATE_ACTIVE:
            raise FailedPrecondition(f"tenant {tenant_id} is not active", reason="TENANT_NOT_ACTIVE")
        return answer
