"""Tenant bindings: the embedded defaults, and validation through the shared registry.

Every rule lives once, in services/common/bindings (the same code the adapters run when they
build a client): field rules per backend, the egress policy (endpoints may not point inside)
and secret-reference scoping. Violations name the field relative to the request (e.g.
`tenant.bindings.llm.api_version`).
"""

from __future__ import annotations

from makoto.tenant.v1 import tenant_pb2

from services.common.bindings import registry
from services.common.bindings.egress import EgressPolicy
from services.common.bindings.llm import (
    DEFAULT_CHAT_MODEL,
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_IMAGE_MODEL,
    DEFAULT_LLM_KEY_REF,
)
from services.common.bindings.syntax import Violations
from services.common.errors import FailedPrecondition, InvalidArgument

__all__ = [
    "DEFAULT_LLM_KEY_REF",
    "check",
    "check_fields",
    "default_bindings",
    "refuse_auto_provision",
    "violations",
    "with_defaults",
]


def default_bindings() -> tenant_pb2.TenantBindings:
    """Endpoint "" means the platform's own endpoints (the LLM simulator in development)."""
    return tenant_pb2.TenantBindings(
        object_store=tenant_pb2.ObjectStoreBinding(backend=tenant_pb2.OBJECT_BACKEND_LOCAL),
        item_store=tenant_pb2.ItemStoreBinding(backend=tenant_pb2.ITEM_BACKEND_SQLITE),
        llm=tenant_pb2.LlmBinding(
            provider=tenant_pb2.LLM_PROVIDER_OPENAI,
            endpoint="",
            chat_model=DEFAULT_CHAT_MODEL,
            embedding_model=DEFAULT_EMBEDDING_MODEL,
            image_model=DEFAULT_IMAGE_MODEL,
            api_key_secret_ref=DEFAULT_LLM_KEY_REF,
        ),
    )


def with_defaults(given: tenant_pb2.TenantBindings | None) -> tenant_pb2.TenantBindings:
    """A copy of `given` where every absent binding (object store, item store, LLM) is the
    embedded default. A binding that is present is kept as given, and validated as given."""
    out = tenant_pb2.TenantBindings()
    if given is not None:
        out.CopyFrom(given)
    defaults = default_bindings()
    for name in ("object_store", "item_store", "llm"):
        if not out.HasField(name):
            getattr(out, name).CopyFrom(getattr(defaults, name))
    return out


async def check(
    bindings: tenant_pb2.TenantBindings, prefix: str, *, tenant_id: str, egress: EgressPolicy
) -> None:
    """INVALID_ARGUMENT with one BadRequest field violation per problem (field rules, endpoints
    pointing inside), then FAILED_PRECONDITION for a secret reference outside the tenant."""
    await registry.check(bindings, tenant_id=tenant_id, prefix=prefix, egress=egress)


def check_fields(bindings: tenant_pb2.TenantBindings, prefix: str) -> None:
    """The field rules alone (no DNS), for code that cannot await; `check` runs them again."""
    problems = registry.violations(bindings, prefix)
    if problems:
        summary = "; ".join(f"{f}: {d}" for f, d in problems[:5])
        raise InvalidArgument(f"invalid bindings: {summary}", field_violations=problems)


def violations(bindings: tenant_pb2.TenantBindings, prefix: str) -> Violations:
    return registry.violations(bindings, prefix)


def refuse_auto_provision(bindings: tenant_pb2.TenantBindings, prefix: str) -> None:
    """FAILED_PRECONDITION AUTO_PROVISION_NOT_ALLOWED when a store binding asks for
    `auto_provision` outside the development profile: resources on first use, without the
    platform's settings (encryption, PITR, tags) or a journal to undo them, are for development;
    elsewhere the platform provisions them (option `managed`) or the tenant brings them."""
    named = [
        f"{prefix}.{kind}.options[auto_provision]"
        for kind, store in (("object_store", bindings.object_store), ("item_store", bindings.item_store))
        if store.options.get("auto_provision", "").lower() == "true"
    ]
    if named:
        raise FailedPrecondition(
            f"auto_provision is for development only (MAKOTO_PROFILE=development): {', '.join(named)}; "
            'use option managed: "true" to have the platform provision the resource',
            reason="AUTO_PROVISION_NOT_ALLOWED",
            metadata={"bindings": ",".join(named)},
        )
