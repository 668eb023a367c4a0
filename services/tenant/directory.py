"""TenantDirectoryService: the internal lookup data-plane services make (service tokens only)."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from makoto.tenant.v1 import directory_pb2

from services.common.errors import FailedPrecondition
from services.common.user_check import TenantUsers
from services.tenant import convert
from services.tenant.model import TenantRecord
from services.tenant.tenants import TenantManager

Context: TypeAlias = grpc.aio.ServicerContext


class TenantDirectoryService:
    def __init__(self, tenants: TenantManager, users: TenantUsers | None = None) -> None:
        self._tenants = tenants
        self._users = users

    async def ResolveTenant(
        self, request: directory_pb2.ResolveTenantRequest, context: Context
    ) -> directory_pb2.ResolveTenantResponse:
        # Unknown and DELETED tenants are both NOT_FOUND; every other state is answered as is,
        # and the caller decides (TenantDirectory.require_active).
        return answer_for(await self._tenants.get(request.tenant_id))

    async def CheckTenantUser(
        self, request: directory_pb2.CheckTenantUserRequest, context: Context
    ) -> directory_pb2.CheckTenantUserResponse:
        if self._users is None:
            raise FailedPrecondition("this TenantService has no user store", reason="NOT_CONFIGURED")
        member = await self._users.has_user(request.tenant_id, request.user_id)
        return directory_pb2.CheckTenantUserResponse(member=member)


def answer_for(tenant: TenantRecord) -> directory_pb2.ResolveTenantResponse:
    """The directory's view of a tenant (also the payload of its change events)."""
    return directory_pb2.ResolveTenantResponse(
        tenant_id=tenant.tenant_id,
        state=convert.state_to_proto(tenant.state),
        bindings=tenant.bindings,
        features=list(tenant.features),
        price_plan_id=tenant.price_plan_id,
        etag=tenant.etag,
    )
