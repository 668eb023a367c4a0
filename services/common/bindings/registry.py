"""The registry of backend configs: ObjectBackend / ItemBackend / LlmProvider -> BackendSpec.

One place says, per backend, which binding rules need no secret (the same functions the
adapters call when they build a client), which hosts its endpoint may name, and where its
defaults come from. TenantService validates bindings only through `check()` below; adding a
backend is one entry here plus its module in this package (tests/contract/ADDING_AN_OBJECT_BACKEND.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import protovalidate
from google.protobuf.message import Message
from makoto.tenant.v1 import tenant_pb2

from services.common.bindings import azure_blob, cosmos, dynamodb, llm, postgres, s3, secret_scope
from services.common.bindings.egress import EgressPolicy, EgressRefused
from services.common.bindings.syntax import Violations, url_violations
from services.common.errors import FailedPrecondition, InvalidArgument

B = TypeVar("B", tenant_pb2.ObjectStoreBinding, tenant_pb2.ItemStoreBinding, tenant_pb2.LlmBinding)


def _none(binding: B, prefix: str) -> Violations:
    return []


@dataclass(frozen=True)
class BackendSpec(Generic[B]):
    """What the platform knows about one backend before any secret is read."""

    name: str
    # Field rules that need no secret: the backend config module's own binding_violations.
    validate: Callable[[B, str], Violations]
    # Hosts a tenant endpoint may name (provider host list); () = any public host.
    hosts: tuple[str, ...] = ()
    # The endpoint is an http(s) URL (PostgreSQL's is a DSN, checked by its validator).
    url_endpoint: bool = True


OBJECT_BACKENDS: dict[int, BackendSpec[tenant_pb2.ObjectStoreBinding]] = {
    tenant_pb2.OBJECT_BACKEND_LOCAL: BackendSpec("local", _none),
    tenant_pb2.OBJECT_BACKEND_S3: BackendSpec("s3", s3.binding_violations, ("*.amazonaws.com",)),
    tenant_pb2.OBJECT_BACKEND_AZURE_BLOB: BackendSpec(
        "azure_blob", azure_blob.binding_violations, ("*.blob.core.windows.net",)
    ),
}

ITEM_BACKENDS: dict[int, BackendSpec[tenant_pb2.ItemStoreBinding]] = {
    tenant_pb2.ITEM_BACKEND_SQLITE: BackendSpec("sqlite", _none),
    tenant_pb2.ITEM_BACKEND_POSTGRES: BackendSpec(
        "postgres", postgres.binding_violations, url_endpoint=False
    ),
    tenant_pb2.ITEM_BACKEND_DYNAMODB: BackendSpec(
        "dynamodb", dynamodb.binding_violations, ("*.amazonaws.com",)
    ),
    tenant_pb2.ITEM_BACKEND_COSMOS: BackendSpec(
        "cosmos", cosmos.binding_violations, ("*.documents.azure.com",)
    ),
}

LLM_PROVIDERS: dict[int, BackendSpec[tenant_pb2.LlmBinding]] = {
    tenant_pb2.LLM_PROVIDER_OPENAI: BackendSpec("openai", llm.openai_violations, ("api.openai.com",)),
    tenant_pb2.LLM_PROVIDER_AZURE_OPENAI: BackendSpec(
        "azure_openai", llm.azure_openai_violations, ("*.openai.azure.com",)
    ),
    tenant_pb2.LLM_PROVIDER_ANTHROPIC: BackendSpec(
        "anthropic", llm.anthropic_violations, ("api.anthropic.com",)
    ),
}


def object_spec(backend: int) -> BackendSpec[tenant_pb2.ObjectStoreBinding] | None:
    return OBJECT_BACKENDS.get(backend)


def item_spec(backend: int) -> BackendSpec[tenant_pb2.ItemStoreBinding] | None:
    return ITEM_BACKENDS.get(backend)


def llm_spec(provider: int) -> BackendSpec[tenant_pb2.LlmBinding] | None:
    return LLM_PROVIDERS.get(provider)


def object_spec_hosts(backend: int) -> tuple[str, ...]:
    spec = object_spec(backend)
    return spec.hosts if spec is not None else ()


def item_spec_hosts(backend: int) -> tuple[str, ...]:
    spec = item_spec(backend)
    return spec.hosts if spec is not None else ()


def llm_spec_hosts(provider: int) -> tuple[str, ...]:
    spec = llm_spec(provider)
    return spec.hosts if spec is not None else ()


def _names(specs: dict[int, BackendSpec[B]]) -> str:
    return ", ".join(spec.name.upper() for spec in specs.values())


_validator = protovalidate.Validator()


def contract_violations(binding: Message, at: str) -> Violations:
    """The rules written in the .proto (protovalidate): the same ones the interceptor applies to
    requests, so code that gets a binding another way (the adapters) checks the same thing."""
    out: Violations = []
    for violation in _validator.collect_violations(binding):
        names = [str(e.field_name) for e in (violation.proto.field.elements if violation.proto.field else ())]
        out.append((".".join([at, *names]), violation.proto.message))
    return out


def _one(spec: BackendSpec[B] | None, binding: B, at: str, kind: str, field: str) -> Violations:
    out = contract_violations(binding, at)
    if spec is None:
        if not any(f == f"{at}.{field}" for f, _ in out):
            out.append((f"{at}.{field}", f"{kind} is required"))
        return out
    out += spec.validate(binding, at)
    if spec.url_endpoint and isinstance(binding, tenant_pb2.ItemStoreBinding):
        # Item endpoints are a URL or a DSN depending on the backend: not a contract rule.
        out += url_violations(binding.endpoint, f"{at}.endpoint")
    return out


def violations(bindings: tenant_pb2.TenantBindings, prefix: str) -> Violations:
    """Field rules that need neither a secret nor the network, for every binding present."""
    out: Violations = []
    if bindings.HasField("object_store"):
        b = bindings.object_store
        kind = f"an object store backend ({_names(OBJECT_BACKENDS)})"
        out += _one(object_spec(b.backend), b, f"{prefix}.object_store", kind, "backend")
    if bindings.HasField("item_store"):
        i = bindings.item_store
        kind = f"an item store backend ({_names(ITEM_BACKENDS)})"
        out += _one(item_spec(i.backend), i, f"{prefix}.item_store", kind, "backend")
    if bindings.HasField("llm"):
        m = bindings.llm
        kind = f"an LLM provider ({_names(LLM_PROVIDERS)})"
        out += _one(llm_spec(m.provider), m, f"{prefix}.llm", kind, "provider")
    return out


def _endpoints(bindings: tenant_pb2.TenantBindings, prefix: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(field, endpoint, provider hosts) of every tenant-given endpoint."""
    out: list[tuple[str, str, tuple[str, ...]]] = []
    if bindings.HasField("object_store") and bindings.object_store.endpoint:
        spec_o = object_spec(bindings.object_store.backend)
        if spec_o is not None:
            out.append((f"{prefix}.object_store.endpoint", bindings.object_store.endpoint, spec_o.hosts))
    if bindings.HasField("item_store") and bindings.item_store.endpoint:
        spec_i = item_spec(bindings.item_store.backend)
        if spec_i is not None:
            out.append((f"{prefix}.item_store.endpoint", bindings.item_store.endpoint, spec_i.hosts))
    if bindings.HasField("llm") and bindings.llm.endpoint:
        spec_l = llm_spec(bindings.llm.provider)
        if spec_l is not None:
            out.append((f"{prefix}.llm.endpoint", bindings.llm.endpoint, spec_l.hosts))
    return out


async def check(
    bindings: tenant_pb2.TenantBindings, *, tenant_id: str, prefix: str, egress: EgressPolicy
) -> None:
    """Everything TenantService checks before it stores bindings: field rules and egress
    (INVALID_ARGUMENT with one field violation per problem), then secret scope
    (FAILED_PRECONDITION). Nothing is contacted: endpoints are only resolved."""
    problems = violations(bindings, prefix)
    if not problems:
        for field, endpoint, hosts in _endpoints(bindings, prefix):
            try:
                await egress.check(endpoint, hosts)
            except EgressRefused as exc:
                problems.append((field, f"refused: the endpoint {exc}"))
    if problems:
        summary = "; ".join(f"{f}: {d}" for f, d in problems[:5])
        raise InvalidArgument(f"invalid bindings: {summary}", field_violations=problems)
    if bindings.HasField("object_store"):
        ref = bindings.object_store.credentials_secret_ref
        secret_scope.check(ref, tenant_id, f"{prefix}.object_store.credentials_secret_ref")
    if bindings.HasField("item_store"):
        ref = bindings.item_store.credentials_secret_ref
        secret_scope.check(ref, tenant_id, f"{prefix}.item_store.credentials_secret_ref")
    if bindings.HasField("llm"):
        secret_scope.check(
            bindings.llm.api_key_secret_ref,
            tenant_id,
            f"{prefix}.llm.api_key_secret_ref",
            platform_refs=llm.platform_key_refs(bindings.llm),
        )


async def check_connect(endpoint: str, hosts: tuple[str, ...], egress: EgressPolicy, binding: str) -> None:
    """The adapters' check right before a client is built (DNS may have changed since bind
    time): FAILED_PRECONDITION naming the binding, never a secret."""
    try:
        await egress.check(endpoint, hosts)
    except EgressRefused as exc:
        raise FailedPrecondition(
            f"{binding} binding: the endpoint {exc}",
            reason="BINDING_EGRESS_REFUSED",
            metadata={"binding": binding},
        ) from None
