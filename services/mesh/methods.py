"""What Envoy must know about each public RPC: its cluster, who may call it, where its tenant id
sits in the request, whether it streams, and whether a retry is safe.

The list of methods is read from the descriptor set (gen/makoto.binpb), so routes follow the
contract; the access class of each method is stated here explicitly. A public method missing from
ACCESS is not routed (fail closed) and a unit test names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

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
    # No token needed at Envoy (the API-key exchange: the key is the credential); the service
    # still checks what the request carries.
    PUBLIC = "public"


ACCESS: dict[str, Access] = {
    # TenantService: the /admin/ control plane, and tenant reads/user management that the
    # tenant's own admins and the platform operator both use (onboarding invites the first user).
    "makoto.tenant.v1.TenantService.CreateTenant": Access.ADMIN,
    "makoto.tenant.v1.TenantService.ListTenants": Access.ADMIN,
    "makoto.tenant.v1.TenantService.UpdateTenant": Access.ADMIN,
    "makoto.tenant.v1.TenantService.DeleteTenant": Access.ADMIN,
    "makoto.tenant.v1.TenantService.SuspendTenant": Access.ADMIN,
    "makoto.tenant.v1.TenantService.ResumeTenant": Access.ADMIN,
    "makoto.tenant.v1.TenantService.GetTenant": Access.TENANT_OR_ADMIN,
    "makoto.tenant.v1.TenantService.InviteUser": Access.TENANT_OR_ADMIN,
    "makoto.tenant.v1.TenantService.ListUsers": Access.TENANT_OR_ADMIN,
    "makoto.tenant.v1.TenantService.RemoveUser": Access.TENANT_OR_ADMIN,
    # API keys under /api/v1/auth/: managed by the tenant's admins (and the operator); the
    # exchange of a key for a token is the one route without a token.
    "makoto.tenant.v1.TenantService.CreateApiKey": Access.TENANT_OR_ADMIN,
    "makoto.tenant.v1.TenantService.ListApiKeys": Access.TENANT_OR_ADMIN,
    "makoto.tenant.v1.TenantService.RevokeApiKey": Access.TENANT_OR_ADMIN,
    "makoto.tenant.v1.TenantService.ExchangeApiKey": Access.PUBLIC,
    # StorageService: tenant data, the tenant's own callers only.
    "makoto.storage.v1.StorageService.UploadObject": Access.TENANT,
    "makoto.storage.v1.StorageService.PutObjectContent": Access.TENANT,
    "makoto.storage.v1.StorageService.DownloadObject": Access.TENANT,
    "makoto.storage.v1.StorageService.GetObjectContent": Access.TENANT,
    "makoto.storage.v1.StorageService.GetObjectMetadata": Access.TENANT,
    "makoto.storage.v1.StorageService.DeleteObject": Access.TENANT,
    "makoto.storage.v1.StorageService.ListObjects": Access.TENANT,
    "makoto.storage.v1.StorageService.SignObjectUrl": Access.TENANT,
    "makoto.storage.v1.StorageService.GetItem": Access.TENANT,
    "makoto.storage.v1.StorageService.PutItem": Access.TENANT,
    "makoto.storage.v1.StorageService.DeleteItem": Access.TENANT,
    "makoto.storage.v1.StorageService.QueryItems": Access.TENANT,
    "makoto.storage.v1.StorageService.BatchGetItems": Access.TENANT,
    "makoto.storage.v1.StorageService.BatchWriteItems": Access.TENANT,
    "makoto.storage.v1.StorageService.TransactWriteItems": Access.TENANT,
    # LLMService: tenant data (prompts, the tenant's provider contract).
    "makoto.llm.v1.LLMService.CreateChatCompletion": Access.TENANT,
    "makoto.llm.v1.LLMService.StreamChatCompletion": Access.TENANT,
    "makoto.llm.v1.LLMService.CreateEmbeddings": Access.TENANT,
    "makoto.llm.v1.LLMService.GenerateImage": Access.TENANT,
    "makoto.llm.v1.LLMService.ListModels": Access.TENANT,
    "makoto.llm.v1.LLMService.CountTokens": Access.TENANT,
    # MeteringService: billing reads for the tenant and the operator; price plans for the operator.
    "makoto.metering.v1.MeteringService.RecordUsage": Access.INTERNAL,
    "makoto.metering.v1.MeteringService.QueryUsage": Access.TENANT_OR_ADMIN,
    "makoto.metering.v1.MeteringService.GetInvoice": Access.TENANT_OR_ADMIN,
    "makoto.metering.v1.MeteringService.GetPricePlan": Access.ADMIN,
    "makoto.metering.v1.MeteringService.SetPricePlan": Access.ADMIN,
    "makoto.metering.v1.MeteringService.GetTenantLimits": Access.TENANT_OR_ADMIN,
    "makoto.metering.v1.MeteringService.SetTenantLimits": Access.ADMIN,
    "makoto.metering.v1.MeteringService.ListAuditRecords": Access.TENANT_OR_ADMIN,
}

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


def _messages(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, descriptor_pb2.DescriptorProto]:
    out: dict[str, descriptor_pb2.DescriptorProto] = {}

    def walk(prefix: str, msgs: list[descriptor_pb2.DescriptorProto]) -> None:
        for msg in msgs:
            name = f"{prefix}.{msg.name}"
            out[name] = msg
            walk(name, list(msg.nested_type))

    for f in fds.file:
        walk(f".{f.package}" if f.package else "", list(f.message_type))
    return out


def find_tenant_field(
    messages: dict[str, descriptor_pb2.DescriptorProto], type_name: str, depth: int = 2
) -> str | None:
    """`tenant_id` at the top of the request, else one message level down (e.g. header.tenant_id)."""
    msg = messages[type_name]
    for f in msg.field:
        if f.name == "tenant_id" and f.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING:
            return "tenant_id"
    if depth <= 1:
        return None
    for f in msg.field:
        if f.type == descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE and f.label != f.LABEL_REPEATED:
            inner = find_tenant_field(messages, f.type_name, depth - 1)
            if inner is not None:
                return f"{f.name}.{inner}"
    return None


def public_methods(descriptor_path: Path) -> list[Method]:
    """Every method of the public services, in descriptor order, with its access class."""
    fds = load_descriptor_set(descriptor_path)
    messages = _messages(fds)
    wanted = {full: cluster for cluster, full in PUBLIC_SERVICES.items()}
    out: list[Method] = []
    for f in fds.file:
        for svc in f.service:
            full_service = f"{f.package}.{svc.name}"
            cluster = wanted.get(full_service)
            if cluster is None:
                continue
            for m in svc.method:
                full = f"{full_service}.{m.name}"
                access = ACCESS.get(full, Access.INTERNAL)
                tenant_field = None
                if access in (Access.TENANT, Access.TENANT_OR_ADMIN):
                    tenant_field = find_tenant_field(messages, m.input_type)
                    if tenant_field is None:
                        raise ValueError(f"{full} is tenant-scoped but its request has no tenant_id")
                rest_paths: tuple[str, ...] = ()
                if access is Access.PUBLIC:
                    rule = m.options.Extensions[annotations_pb2.http]
                    path = getattr(rule, rule.WhichOneof("pattern") or "get")
                    if not path or "{" in path:
                        raise ValueError(f"{full} is public and needs a fixed REST path")
                    rest_paths = (path,)
                out.append(
                    Method(
                        cluster=cluster,
                        service=full_service,
                        name=m.name,
                        access=access,
                        tenant_field=tenant_field,
                        client_streaming=m.client_streaming,
                        server_streaming=m.server_streaming,
                        rest_paths=rest_paths,
                    )
                )
    return out


def unclassified(descriptor_path: Path) -> list[str]:
    """Public methods that nobody classified (they are not routed); should be empty."""
    fds = load_descriptor_set(descriptor_path)
    names = [
        f"{f.package}.{s.name}.{m.name}"
        for f in fds.file
        for s in f.service
        if f"{f.package}.{s.name}" in PUBLIC_SERVICES.values()
        for m in s.method
    ]
    return [n for n in names if n not in ACCESS]
