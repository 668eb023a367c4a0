"""What the interceptor checks for one RPC. The policies themselves are written in the contract
(the `(makoto.api.v1.access)` option) and read by services/common/access.py."""

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


# Public without a token: health and reflection (operators use grpcurl).
PUBLIC_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
