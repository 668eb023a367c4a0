"""TenantService servicer: the contract's messages in and out, the use cases in between.

Authentication, the role/tenant check and protovalidate rules already ran in the interceptor;
errors raised below (services.common.errors) become google.rpc.Status there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from typing import TypeAlias

import grpc
from google.api import httpbody_pb2
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2
from makoto.tenant.v1 import tenant_pb2

from services.common.errors import FailedPrecondition, PermissionDenied
from services.common.identity import maybe_principal
from services.tenant import convert, updates
from services.tenant.api_keys import ApiKeyManager
from services.tenant.offboarding.runner import Offboarder
from services.tenant.onboarding import Onboarder
from services.tenant.operations import OperationReader
from services.tenant.revocations import TokenRevocations
from services.tenant.tenants import TenantManager
from services.tenant.users import UserManager

Context: TypeAlias = grpc.aio.ServicerContext


class TenantService:
    def __init__(
        self,
        tenants: TenantManager,
        users: UserManager,
        operations: OperationReader,
        keys: ApiKeyManager,
        offboarder: Offboarder | None = None,
        revocations: TokenRevocations | None = None,
        onboarder: Onboarder | None = None,
    ) -> None:
        self._revocations = revocations
        self._tenants = tenants
        self._users = users
        self._operations = operations
        self._keys = keys
        self._offboarder = offboarder
        self._onboarder = onboarder

    def _offboarding(self) -> Offboarder:
        if self._offboarder is None:
            raise FailedPrecondition("offboarding is not configured on this server", reason="NOT_CONFIGURED")
        return self._offboarder

    async def CreateTenant(
        self, request: tenant_pb2.CreateTenantRequest, context: Context
    ) -> tenant_pb2.Tenant:
        spec = convert.spec_from_proto(request.tenant)
        tenant = await self._tenants.create(spec, request_id=request.request_id)
        return convert.tenant_to_proto(tenant)

    async def OnboardTenant(
        self, request: tenant_pb2.CreateTenantRequest, context: Context
    ) -> operations_pb2.Operation:
        if self._onboarder is None:
            raise FailedPrecondition("onboarding is not configured on this server", reason="NOT_CONFIGURED")
        spec = convert.spec_from_proto(request.tenant)
        operation_id = await self._onboarder.start(spec, request_id=request.request_id)
        return await self._operations.get(spec.tenant_id, operation_id)

    async def GetTenant(self, request: tenant_pb2.GetTenantRequest, context: Context) -> tenant_pb2.Tenant:
        return convert.tenant_to_proto(await self._tenants.get(request.tenant_id))

    async def ListTenants(
        self, request: tenant_pb2.ListTenantsRequest, context: Context
    ) -> tenant_pb2.ListTenantsResponse:
        page, next_token = await self._tenants.list(
            page_size=request.page_size, page_token=request.page_token, show_deleted=request.show_deleted
        )
        return tenant_pb2.ListTenantsResponse(
            tenants=[convert.tenant_to_proto(t) for t in page], next_page_token=next_token
        )

    async def UpdateTenant(
        self, request: tenant_pb2.UpdateTenantRequest, context: Context
    ) -> tenant_pb2.Tenant:
        paths = updates.mask_paths(request)
        tenant = await self._tenants.update(
            request.tenant.tenant_id,
            lambda current: updates.changes(current, request.tenant, paths),
            etag=request.tenant.etag,
        )
        return convert.tenant_to_proto(tenant)

    async def DeleteTenant(
        self, request: tenant_pb2.DeleteTenantRequest, context: Context
    ) -> tenant_pb2.Tenant:
        return convert.tenant_to_proto(await self._tenants.delete(request.tenant_id, etag=request.etag))

    async def OffboardTenant(
        self, request: tenant_pb2.OffboardTenantRequest, context: Context
    ) -> operations_pb2.Operation:
        operation_id = await self._offboarding().start(request.tenant_id, etag=request.etag)
        return await self._operations.get(request.tenant_id, operation_id)

    async def DownloadExport(
        self, request: tenant_pb2.DownloadExportRequest, context: Context
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        chunks = await self._offboarding().download(request.token)
        first = True
        async for chunk in chunks:
            if first:
                yield httpbody_pb2.HttpBody(content_type="application/gzip", data=chunk)
                first = False
            else:
                yield httpbody_pb2.HttpBody(data=chunk)
        if first:  # an empty file cannot be a finished archive; still answer with the type
            yield httpbody_pb2.HttpBody(content_type="application/gzip")

    async def SuspendTenant(
        self, request: tenant_pb2.SuspendTenantRequest, context: Context
    ) -> tenant_pb2.Tenant:
        return convert.tenant_to_proto(await self._tenants.suspend(request.tenant_id, request.reason))

    async def ResumeTenant(
        self, request: tenant_pb2.ResumeTenantRequest, context: Context
    ) -> tenant_pb2.Tenant:
        return convert.tenant_to_proto(await self._tenants.resume(request.tenant_id))

    async def InviteUser(
        self, request: tenant_pb2.InviteUserRequest, context: Context
    ) -> tenant_pb2.TenantUser:
        user = await self._users.invite(
            request.tenant_id, request.user.email, convert.user_role(request.user.role)
        )
        return convert.user_to_proto(user)

    async def ListUsers(
        self, request: tenant_pb2.ListUsersRequest, context: Context
    ) -> tenant_pb2.ListUsersResponse:
        page, next_token = await self._users.list(
            request.tenant_id, page_size=request.page_size, page_token=request.page_token
        )
        return tenant_pb2.ListUsersResponse(
            users=[convert.user_to_proto(u) for u in page], next_page_token=next_token
        )

    async def RemoveUser(self, request: tenant_pb2.RemoveUserRequest, context: Context) -> empty_pb2.Empty:
        await self._users.remove(request.tenant_id, request.user_id)
        return empty_pb2.Empty()

    async def GetOperation(
        self, request: tenant_pb2.GetOperationRequest, context: Context
    ) -> operations_pb2.Operation:
        return await self._operations.get(request.tenant_id, request.operation_id)

    async def ListOperations(
        self, request: tenant_pb2.ListOperationsRequest, context: Context
    ) -> operations_pb2.ListOperationsResponse:
        return await self._operations.list(
            request.tenant_id, page_size=request.page_size, page_token=request.page_token
        )

    # -- API keys ----------------------------------------------------------------------------

    @staticmethod
    def _key_manager() -> str:
        """The caller's `sub`; a token issued for an API key may not manage keys (a leaked key
        must not be able to mint itself a longer-lived successor)."""
        principal = maybe_principal()
        if principal is None or principal.api_key_id:
            raise PermissionDenied(
                "API keys are managed with a user's token", reason="API_KEY_CANNOT_MANAGE_KEYS"
            )
        return principal.subject

    async def CreateApiKey(
        self, request: tenant_pb2.CreateApiKeyRequest, context: Context
    ) -> tenant_pb2.CreateApiKeyResponse:
        key = request.api_key
        record, secret = await self._keys.create(
            request.tenant_id,
            display_name=key.display_name,
            role=convert.user_role(key.role),
            methods=list(key.methods),
            expire_time=key.expire_time.ToDatetime(tzinfo=UTC),
            created_by=self._key_manager(),
        )
        return tenant_pb2.CreateApiKeyResponse(api_key=convert.api_key_to_proto(record), secret=secret)

    async def ListApiKeys(
        self, request: tenant_pb2.ListApiKeysRequest, context: Context
    ) -> tenant_pb2.ListApiKeysResponse:
        self._key_manager()
        keys = await self._keys.list(request.tenant_id)
        return tenant_pb2.ListApiKeysResponse(api_keys=[convert.api_key_to_proto(k) for k in keys])

    async def RevokeApiKey(
        self, request: tenant_pb2.RevokeApiKeyRequest, context: Context
    ) -> tenant_pb2.ApiKey:
        record = await self._keys.revoke(request.tenant_id, request.key_id, revoked_by=self._key_manager())
        return convert.api_key_to_proto(record)

    async def RevokeToken(
        self, request: tenant_pb2.RevokeTokenRequest, context: Context
    ) -> tenant_pb2.RevokeTokenResponse:
        if self._revocations is None:
            raise FailedPrecondition(
                "token revocation is not configured on this server", reason="NOT_CONFIGURED"
            )
        until = await self._revocations.revoke(request.tenant_id, request.token_id)
        answer = tenant_pb2.RevokeTokenResponse(tenant_id=request.tenant_id, token_id=request.token_id)
        answer.revoked_until.FromDatetime(until)
        return answer

    async def ExchangeApiKey(
        self, request: tenant_pb2.ExchangeApiKeyRequest, context: Context
    ) -> tenant_pb2.ExchangeApiKeyResponse:
        issued = await self._keys.exchange(request.api_key)
        return tenant_pb2.ExchangeApiKeyResponse(
            access_token=issued.token,
            token_type="Bearer",  # noqa: S106  (the scheme's name, not a secret)
            expires_in=issued.expires_in,
        )
