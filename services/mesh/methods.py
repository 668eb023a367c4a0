"""What Envoy must know about each public RPC: its cluster, who may call it, where its tenant id
sits in the request, whether it streams, and whether a retry is safe.

Everything is read from the descriptor set (gen/makoto.binpb): the methods, and who may call each
from its `(makoto.api.v1.access)` option -- the same statement the services' interceptors read
(services/common/access.py), so Envoy and the services cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from makoto.api.v1 import access_pb2

from services.common.access import AccessRuleError, contract_services, rule_of, tenant_roles

# Public services Envoy routes and transcodes, keyed by cluster name.
PUBLIC_SERVICES: dict[str, str] = {
    "tenant": "makoto.tenant.v1.TenantService",
    "storage": "makoto.storage.v1.StorageService",
    "llm": "makoto.llm.v1.LLMService",
    "metering": "makoto.metering.v1.MeteringService",
}


class Access(StrEnum):
    # Token tenant must equal the request's tenant; nobody else (not even platform-admin).
    TENANT = "tenant"
    # Token tenant must equal the request's tenant, or the caller is platform-admin.
    TENANT_OR_ADMIN = "tenant-or-admin"
    # platform-admin only (control plane).
    ADMIN = "admin"
    # Never routed from outside.
    INTERNAL = "internal"
    # Routed without a token (jwt_authn exempts its exact REST and gRPC paths): the request
    # carries its own credential (an API key being exchanged).
    PUBLIC = "public"


# Reads that are safe to retry when the upstream was unavailable or reset the stream.
_IDEMPOTENT_PREFIXES = ("Get", "List", "Query", "BatchGet", "Download", "Count")


@dataclass(frozen=True)
class Method:
    cluster: str
    service: str  # e.g. makoto.storage.v1.StorageService
    name: str  # e.g. GetItem
    access: Access
    # Dotted path of the tenant id in the (first) request message; None for ADMIN methods.
    tenant_field: str | None
    client_streaming: bool
    server_streaming: bool
    # The REST path(s) of a PUBLIC method, exempted from jwt_authn by exact match.
    rest_paths: tuple[str, ...] = ()
    # Role claims that may call for their own tenant (Envoy checks the role per route).
    roles: tuple[str, ...] = ()
    # The HTTP verb of rest_paths (lower case, e.g. "post", "get").
    rest_verb: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.service}.{self.name}"

    @property
    def grpc_path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def streaming(self) -> bool:
        return self.client_streaming or self.server_streaming

    @property
    def idempotent(self) -> bool:
        return self.name.startswith(_IDEMPOTENT_PREFIXES)


def load_descriptor_set(path: Path) -> descriptor_pb2.FileDescriptorSet:
    return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())


def access_class(rule: access_pb2.AccessRule) -> Access:
    """Envoy's view of an access rule: the tenant, platform-admin, and (Method.roles) the role
    of a tenant caller, as the service checks them."""
    if rule.internal:
        return Access.INTERNAL
    if rule.public:
        return Access.PUBLIC
    if access_pb2.ROLE_PLATFORM_ADMIN in rule.any_tenant:
        return Access.TENANT_OR_ADMIN if rule.roles else Access.ADMIN
    return Access.TENANT


def public_methods(descriptor_path: Path) -> list[Method]:
    """Every method of the public services, in descriptor order, with its access class.
    Raises AccessRuleError when a method's access option is missing or inconsistent."""
    clusters = {full: cluster for cluster, full in PUBLIC_SERVICES.items()}
    out: list[Method] = []
    for service in contract_services(load_descriptor_set(descriptor_path)):
        cluster = clusters.get(service.full_name)
        if cluster is None:
            continue
        for m in service.methods:
            rule = rule_of(m)
            access = access_class(rule)
            rest_paths: tuple[str, ...] = ()
            rest_verb = ""
            if access is Access.PUBLIC:
                http = m.GetOptions().Extensions[annotations_pb2.http]
                rest_verb = http.WhichOneof("pattern") or "get"
                path = getattr(http, rest_verb)
                if not path or "{" in path:
                    raise AccessRuleError(f"{service.full_name}.{m.name}: public needs a fixed REST path")
                rest_paths = (path,)
            out.append(
                Method(
                    cluster=cluster,
                    service=service.full_name,
                    name=m.name,
                    access=access,
                    # Envoy checks the tenant of tenant-scoped calls only.
                    tenant_field=rule.tenant_field
                    if access in (Access.TENANT, Access.TENANT_OR_ADMIN)
                    else None,
                    client_streaming=m.client_streaming,
                    server_streaming=m.server_streaming,
                    rest_paths=rest_paths,
                    roles=tuple(str(r) for r in tenant_roles(rule)),
                    rest_verb=rest_verb,
                )
            )
    return out
