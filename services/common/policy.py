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
    # The product feature the call uses; a token with a `custom:features` claim must list it.
    feature: str | None = None


# Server reflection (operators use grpcurl): open in development, a token (any role) elsewhere.
REFLECTION_PREFIXES = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
# Outside the call pipeline: health (orchestrators and Envoy probe it) and reflection.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", *REFLECTION_PREFIXES)
