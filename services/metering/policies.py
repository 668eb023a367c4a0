"""Who may call which MeteringService RPC (the interceptor refuses methods missing here)."""

from __future__ import annotations

from services.common.identity import Role
from services.common.policy import MethodPolicy, admin_rpc, internal_rpc, tenant_rpc

SERVICE = "makoto.metering.v1.MeteringService"

POLICIES: dict[str, MethodPolicy] = {
    # Other services' spooling clients only; never routed by Envoy.
    f"/{SERVICE}/RecordUsage": internal_rpc(),
    # A tenant reads its own usage and invoices; a platform-admin reads any tenant's.
    f"/{SERVICE}/QueryUsage": tenant_rpc(admin_reads=True, rate_class="reads"),
    f"/{SERVICE}/GetInvoice": tenant_rpc(admin_reads=True, rate_class="reads"),
    f"/{SERVICE}/GetPricePlan": admin_rpc(),
    f"/{SERVICE}/SetPricePlan": admin_rpc(),
    # Tenants read their own limits; the LLM and storage services read any tenant's.
    f"/{SERVICE}/GetTenantLimits": tenant_rpc(admin_reads=True, service_reads=True, rate_class="reads"),
    f"/{SERVICE}/SetTenantLimits": admin_rpc("tenant_id"),
    # The audit log: the tenant's admins and the platform operator.
    f"/{SERVICE}/ListAuditRecords": tenant_rpc(
        admin_reads=True, roles=frozenset({Role.TENANT_ADMIN}), rate_class="reads"
    ),
}
