"""Tenant bindings: the embedded defaults and the per-backend rules a binding must satisfy.

protovalidate (rules in the .proto) already checks sizes; what depends on the chosen backend
lives here: which fields a backend needs, endpoint shape, and secret-reference schemes.
Violations name the field relative to the request (e.g. `tenant.bindings.llm.api_version`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from makoto.tenant.v1 import tenant_pb2

from services.common.errors import InvalidArgument

# Secrets are referenced, never stored: these are the stores a reference may point into.
SECRET_SCHEMES = ("local://", "env://", "aws-sm://", "arn:aws:secretsmanager:", "azure-kv://")

# LLM binding defaults: endpoint "" means "the mesh's LLM simulator" (settings.simulator_url).
DEFAULT_CHAT_MODEL = "sim-chat"
DEFAULT_EMBEDDING_MODEL = "sim-embed"
DEFAULT_IMAGE_MODEL = "sim-image"
DEFAULT_LLM_KEY_REF = "local://llm-simulator-key"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE_REF = re.compile(r"^[A-Za-z0-9._~:/@+=,!*%-]+$")

Violations = list[tuple[str, str]]


def default_bindings() -> tenant_pb2.TenantBindings:
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


def check(bindings: tenant_pb2.TenantBindings, prefix: str) -> None:
    """INVALID_ARGUMENT with one BadRequest field violation per problem, if there is any."""
    problems = violations(bindings, prefix)
    if problems:
        summary = "; ".join(f"{f}: {d}" for f, d in problems[:5])
        raise InvalidArgument(f"invalid bindings: {summary}", field_violations=problems)


def violations(bindings: tenant_pb2.TenantBindings, prefix: str) -> Violations:
    out: Violations = []
    if bindings.HasField("object_store"):
        out += _object_store(bindings.object_store, f"{prefix}.object_store")
    if bindings.HasField("item_store"):
        out += _item_store(bindings.item_store, f"{prefix}.item_store")
    if bindings.HasField("llm"):
        out += _llm(bindings.llm, f"{prefix}.llm")
    return out


def _object_store(b: tenant_pb2.ObjectStoreBinding, at: str) -> Violations:
    out: Violations = []
    known = set(tenant_pb2.ObjectBackend.values()) - {tenant_pb2.OBJECT_BACKEND_UNSPECIFIED}
    if b.backend not in known:
        out.append((f"{at}.backend", "an object store backend is required (LOCAL, S3 or AZURE_BLOB)"))
    elif b.backend == tenant_pb2.OBJECT_BACKEND_S3:
        if not b.region and not b.endpoint:
            out.append((f"{at}.region", "S3 needs a region or an endpoint"))
    elif b.backend == tenant_pb2.OBJECT_BACKEND_AZURE_BLOB and not b.endpoint:
        out.append((f"{at}.endpoint", "AZURE_BLOB needs the storage account URL as endpoint"))
    out += _url(b.endpoint, f"{at}.endpoint")
    out += _secret_ref(b.credentials_secret_ref, f"{at}.credentials_secret_ref")
    return out


def _item_store(b: tenant_pb2.ItemStoreBinding, at: str) -> Violations:
    out: Violations = []
    known = set(tenant_pb2.ItemBackend.values()) - {tenant_pb2.ITEM_BACKEND_UNSPECIFIED}
    if b.backend not in known:
        out.append(
            (f"{at}.backend", "an item store backend is required (SQLITE, POSTGRES, DYNAMODB or COSMOS)")
        )
    elif b.backend == tenant_pb2.ITEM_BACKEND_POSTGRES:
        if not b.endpoint and not b.credentials_secret_ref:
            out.append((f"{at}.endpoint", "POSTGRES needs an endpoint (host) or a credentials_secret_ref"))
        out += _postgres_endpoint(b.endpoint, f"{at}.endpoint")
    elif b.backend == tenant_pb2.ITEM_BACKEND_DYNAMODB:
        if not b.region:
            out.append((f"{at}.region", "DYNAMODB needs a region"))
        out += _url(b.endpoint, f"{at}.endpoint")
    elif b.backend == tenant_pb2.ITEM_BACKEND_COSMOS:
        if not b.endpoint:
            out.append((f"{at}.endpoint", "COSMOS needs the account URL as endpoint"))
        out += _url(b.endpoint, f"{at}.endpoint")
    out += _secret_ref(b.credentials_secret_ref, f"{at}.credentials_secret_ref")
    return out


def _llm(b: tenant_pb2.LlmBinding, at: str) -> Violations:
    out: Violations = []
    known = set(tenant_pb2.LlmProvider.values()) - {tenant_pb2.LLM_PROVIDER_UNSPECIFIED}
    if b.provider not in known:
        out.append((f"{at}.provider", "an LLM provider is required (OPENAI, AZURE_OPENAI or ANTHROPIC)"))
    elif b.provider == tenant_pb2.LLM_PROVIDER_AZURE_OPENAI:
        if not b.endpoint:
            out.append((f"{at}.endpoint", "AZURE_OPENAI needs the resource endpoint"))
        if not b.api_version:
            out.append((f"{at}.api_version", "AZURE_OPENAI needs an api_version"))
    out += _url(b.endpoint, f"{at}.endpoint")
    out += _secret_ref(b.api_key_secret_ref, f"{at}.api_key_secret_ref")
    return out


def _url(value: str, at: str) -> Violations:
    """An endpoint, when given, is an http(s) URL with a host and no embedded credentials."""
    if not value:
        return []
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return [(at, "must be an http(s) URL")]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [(at, "must be an http(s) URL")]
    if parts.username or parts.password:
        return [(at, "must not carry credentials; use the secret reference field")]
    return []


def _postgres_endpoint(value: str, at: str) -> Violations:
    """host, host:port or a postgres URL, never with a password in it."""
    if not value:
        return []
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            return [(at, "must be host[:port] or a postgresql:// URL")]
        if parts.password:
            return [(at, "must not carry a password; use credentials_secret_ref")]
        return []
    if not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?", value):
        return [(at, "must be host[:port] or a postgresql:// URL")]
    return []


def _secret_ref(value: str, at: str) -> Violations:
    if not value:
        return []
    scheme = next((s for s in SECRET_SCHEMES if value.startswith(s)), None)
    if scheme is None:
        return [(at, "must be a secret reference: " + ", ".join(f"{s}..." for s in SECRET_SCHEMES))]
    rest = value[len(scheme) :]
    if not rest or not _SAFE_REF.fullmatch(rest):
        return [(at, f"{scheme} reference needs a name of URL-safe characters")]
    if scheme == "env://" and not _ENV_NAME.fullmatch(rest):
        return [(at, "env:// reference needs an environment variable name")]
    return []
