"""Who may call an RPC, read from the contract: the `(makoto.api.v1.access)` option every method
carries (proto/makoto/api/v1/access.proto). Each service's interceptor (policies_for) and Envoy's
routes (services/mesh/methods.py) both derive from it, so there is one statement to keep right;
scripts/gen.py refuses a contract with a method that lacks it (problems)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from makoto.api.v1 import access_pb2

from services.common.identity import Role
from services.common.policy import MethodPolicy

_ROLES: dict[int, Role] = {
    access_pb2.ROLE_PLATFORM_ADMIN: Role.PLATFORM_ADMIN,
    access_pb2.ROLE_TENANT_ADMIN: Role.TENANT_ADMIN,
    access_pb2.ROLE_MEMBER: Role.MEMBER,
    access_pb2.ROLE_SERVICE: Role.SERVICE,
}

_RATE_CLASSES: dict[int, str | None] = {
    access_pb2.RATE_CLASS_UNSPECIFIED: None,
    access_pb2.RATE_CLASS_READS: "reads",
    access_pb2.RATE_CLASS_WRITES: "writes",
    access_pb2.RATE_CLASS_LLM: "llm",
}

_SERVICE_ONLY = frozenset({Role.SERVICE})

# The generated stub types the extension as a plain FieldDescriptor, which the Extensions
# mapping's annotation does not accept.
_ACCESS: Any = access_pb2.access


class AccessRuleError(ValueError):
    """A method whose access rule is missing or inconsistent: the contract is wrong."""


def full_name(method: MethodDescriptor) -> str:
    return f"{method.containing_service.full_name}.{method.name}"


def rule_of(method: MethodDescriptor) -> access_pb2.AccessRule:
    """The method's access rule, checked; AccessRuleError when missing or inconsistent."""
    options = method.GetOptions()
    if not options.HasExtension(_ACCESS):
        raise AccessRuleError(f"{full_name(method)} has no (makoto.api.v1.access) option")
    rule: access_pb2.AccessRule = options.Extensions[_ACCESS]
    _check(method, rule)
    return rule


def _check(method: MethodDescriptor, rule: access_pb2.AccessRule) -> None:
    name = full_name(method)
    if any(r not in _ROLES for r in (*rule.roles, *rule.any_tenant)):
        raise AccessRuleError(f"{name}: ROLE_UNSPECIFIED or unknown role in its access rule")
    if rule.internal and rule.public:
        raise AccessRuleError(f"{name}: a rule is internal or public, not both")
    if rule.internal or rule.public:
        if rule.roles or rule.any_tenant or rule.rate_class:
            raise AccessRuleError(f"{name}: an internal or public rule names no roles and no rate class")
        if rule.feature:
            raise AccessRuleError(f"{name}: an internal or public rule names no feature")
        if rule.public and rule.tenant_field:
            raise AccessRuleError(f"{name}: a public rule names no tenant_field (no token to check)")
    elif not rule.roles and not rule.any_tenant:
        raise AccessRuleError(f"{name}: its access rule lets nobody call")
    if rule.roles and not rule.tenant_field:
        # Tenant callers are checked against the request's tenant; without one, any tenant could call.
        raise AccessRuleError(f"{name}: tenant roles need a tenant_field")
    if rule.tenant_field:
        _check_field(name, method.input_type, rule.tenant_field)


def _check_field(name: str, message: Descriptor, path: str) -> None:
    """The dotted path must lead through singular sub-messages to a string field."""
    current = message
    parts = path.split(".")
    for i, part in enumerate(parts):
        field = current.fields_by_name.get(part)
        if field is None:
            raise AccessRuleError(f"{name}: tenant_field {path!r}: {current.full_name} has no field {part!r}")
        repeated = field.is_repeated
        last = i == len(parts) - 1
        if last and (field.type != FieldDescriptor.TYPE_STRING or repeated):
            raise AccessRuleError(f"{name}: tenant_field {path!r} is not a singular string field")
        if not last:
            if field.type != FieldDescriptor.TYPE_MESSAGE or repeated:
                raise AccessRuleError(f"{name}: tenant_field {path!r}: {part!r} is not a singular message")
            current = field.message_type  # type: ignore[assignment]  # set for TYPE_MESSAGE


def tenant_roles(rule: access_pb2.AccessRule) -> tuple[Role, ...]:
    """The roles that may call for their own tenant (the rule's `roles`)."""
    return tuple(_ROLES[r] for r in rule.roles)


def policy_of(method: MethodDescriptor) -> MethodPolicy:
    """The interceptor's policy for one method: may call = roles + any_tenant; internal methods
    are for role "service" (any tenant), metered (for the platform, payer=platform) when they
    name a tenant. RecordUsage names none: delivering usage never makes usage."""
    rule = rule_of(method)
    tenant_field = rule.tenant_field or None
    if rule.public:
        return MethodPolicy(roles=frozenset(), tenant_field=None, metered=False, public=True)
    if rule.internal:
        return MethodPolicy(
            roles=_SERVICE_ONLY,
            tenant_field=tenant_field,
            cross_tenant_roles=_SERVICE_ONLY,
            metered=tenant_field is not None,
        )
    cross = frozenset(_ROLES[r] for r in rule.any_tenant)
    return MethodPolicy(
        roles=frozenset(_ROLES[r] for r in rule.roles) | cross,
        tenant_field=tenant_field,
        cross_tenant_roles=cross,
        rate_class=_RATE_CLASSES[rule.rate_class],
        feature=rule.feature or None,
    )


def policies_for(*services: ServiceDescriptor) -> dict[str, MethodPolicy]:
    """The interceptor's table for the services one server hosts, keyed by gRPC path."""
    return {
        f"/{service.full_name}/{method.name}": policy_of(method)
        for service in services
        for method in service.methods
    }


def contract_services(fds: descriptor_pb2.FileDescriptorSet) -> list[ServiceDescriptor]:
    """The MAKOTO services of a descriptor set, resolved in a private pool (the set may differ
    from the modules in gen/ that the default pool holds)."""
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    return [
        pool.FindServiceByName(f"{f.package}.{s.name}")
        for f in fds.file
        if f.package.startswith("makoto.")
        for s in f.service
    ]


def problems(services: Iterable[ServiceDescriptor]) -> list[str]:
    """Every method whose access rule is missing or inconsistent (empty when the contract is right)."""
    found: list[str] = []
    for service in services:
        for method in service.methods:
            try:
                rule_of(method)
            except AccessRuleError as exc:
                found.append(str(exc))
    return found
