"""Who may call which RPC: one table per server, checked by the auth step of the interceptor."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.common.identity import Role

TENANT_ROLES = frozenset({Role.TENANT_ADMIN, Role.MEMBER})


@dataclass(frozen=True)
class MethodPolicy:
    roles: frozenset[Role]
    # Dotted path to the request's tenant id (checked against the token), None if the RPC has none.
    tenant_field: str | None = "tenant_id"
    # Roles that may name any tenant in tenant_field.
    cross_tenant_roles: frozenset[Role] = field(default_factory=frozenset)
    # Record an api_calls usage event for this RPC.
    metered: bool = True
    # Rate-limit class on top of the tenant's overall API rate: "reads", "writes", "llm" or None.
    rate_class: str | None = None
    # Callable without a token (the servicer authenticates the request by what it carries).
    public: bool = False


def tenant_rpc(
    *,
    admin_reads: bool = False,
    roles: frozenset[Role] = TENANT_ROLES,
    rate_class: str | None = None,
    service_reads: bool = False,
) -> MethodPolicy:
    """A tenant-scoped call: the token's tenant must equal the request's tenant_id.
    admin_reads lets a platform-admin act on any tenant (control-plane and billing reads);
    service_reads lets other services ask about any tenant too."""
    cross = frozenset({Role.PLATFORM_ADMIN}) if admin_reads else frozenset()
    if service_reads:
        cross |= {Role.SERVICE}
    return MethodPolicy(roles=roles | cross, cross_tenant_roles=cross, rate_class=rate_class)


def stream_tenant_rpc(tenant_field: str, rate_class: str | None = None) -> MethodPolicy:
    """Client-streaming call whose tenant id sits in a sub-message (e.g. header.tenant_id)."""
    return MethodPolicy(roles=TENANT_ROLES, tenant_field=tenant_field, rate_class=rate_class)


def admin_rpc(tenant_field: str | None = None) -> MethodPolicy:
    return MethodPolicy(
        roles=frozenset({Role.PLATFORM_ADMIN}),
        tenant_field=tenant_field,
        cross_tenant_roles=frozenset({Role.PLATFORM_ADMIN}),
    )


def internal_rpc(tenant_field: str | None = None) -> MethodPolicy:
    """Service-to-service only; never routed by Envoy."""
    return MethodPolicy(
        roles=frozenset({Role.SERVICE}),
        tenant_field=tenant_field,
        cross_tenant_roles=frozenset({Role.SERVICE}),
        metered=False,
    )


def public_rpc() -> MethodPolicy:
    """No bearer token: the request carries its own credential (an API key being exchanged).
    Still logged, validated and deadline-bound; never metered (no tenant is known up front)."""
    return MethodPolicy(roles=frozenset(), tenant_field=None, metered=False, public=True)


# Public without a token: health and reflection (operators use grpcurl).
PUBLIC_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
