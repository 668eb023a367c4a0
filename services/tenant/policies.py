"""Who may call which RPC of the tenant server (the interceptor refuses anything not listed)."""

from __future__ import annotations

from services.common.identity import Role
from services.common.policy import MethodPolicy, admin_rpc, internal_rpc, public_rpc, tenant_rpc

_T = "/makoto.tenant.v1.TenantService/"
_D = "/makoto.tenant.v1.TenantDirectoryService/"

POLICIES: dict[str, MethodPolicy] = {
    _T + "CreateTenant": admin_rpc(tenant_field="tenant.tenant_id"),
    _T + "ListTenants": admin_rpc(),
    _T + "UpdateTenant": admin_rpc(tenant_field="tenant.tenant_id"),
    _T + "DeleteTenant": admin_rpc(tenant_field="tenant_id"),
    _T + "SuspendTenant": admin_rpc(tenant_field="tenant_id"),
    _T + "ResumeTenant": admin_rpc(tenant_field="tenant_id"),
    # A tenant's own users read their tenant (also while SUSPENDED, to see why); platform-admin any.
    _T + "GetTenant": tenant_rpc(admin_reads=True),
    _T + "ListUsers": tenant_rpc(admin_reads=True),
    # Managing users: tenant-admin of that tenant, or platform-admin; members are refused.
    _T + "InviteUser": tenant_rpc(admin_reads=True, roles=frozenset({Role.TENANT_ADMIN})),
    _T + "RemoveUser": tenant_rpc(admin_reads=True, roles=frozenset({Role.TENANT_ADMIN})),
    # API keys: managed like users (tenant-admin of the tenant, or platform-admin).
    _T + "CreateApiKey": tenant_rpc(admin_reads=True, roles=frozenset({Role.TENANT_ADMIN})),
    _T + "ListApiKeys": tenant_rpc(admin_reads=True, roles=frozenset({Role.TENANT_ADMIN})),
    _T + "RevokeApiKey": tenant_rpc(admin_reads=True, roles=frozenset({Role.TENANT_ADMIN})),
    _T + "ExchangeApiKey": public_rpc(),
    _D + "ResolveTenant": internal_rpc(tenant_field="tenant_id"),
}
