"""StorageService server wiring: the one place adapters, resolver, metering and policies meet."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from makoto.storage.v1 import storage_service_pb2, storage_service_pb2_grpc

from services.common.config import MeshSettings
from services.common.limits.wiring import LimitsParts, build_limits
from services.common.server import Registration, ServerSpec
from services.common.usage import UsageRecorder
from services.storage.connections import TenantConnections
from services.storage.items import ItemManager
from services.storage.objects import ObjectManager
from services.storage.quota import StorageQuota
from services.storage.registry import BackendRegistry, SecretSource, default_registry
from services.storage.servicer import StorageServicer
from services.storage.stored_bytes import StoredBytes
from services.storage.tenants import TenantResolver

SERVICE_NAME = storage_service_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name


async def build(
    settings: MeshSettings,
    *,
    recorder: UsageRecorder | None = None,
    resolver: TenantResolver | None = None,
    registry: BackendRegistry | None = None,
    secrets: SecretSource | None = None,
    max_tenants: int = 256,
    adapter_ttl_seconds: float = 900.0,
    limits: LimitsParts | None = None,
) -> ServerSpec:
    """Production wiring by default; tests inject a recorder, a resolver or a registry."""
    on_stop: list[Callable[[], Awaitable[None]]] = []
    if recorder is None:
        from services.common.usage_jetstream import usage_recorder

        recorder = usage_recorder(settings, "storage")
    if resolver is None:
        from services.common.directory_client import TenantDirectory

        directory = TenantDirectory.from_settings(settings, "storage")
        resolver = directory
        on_stop.append(directory.close)
    if secrets is None:
        from services.common.secrets import SecretResolver

        secrets = SecretResolver.for_settings(settings)
    connections = TenantConnections(
        resolver,
        registry or default_registry(),
        settings,
        secrets=secrets,
        max_tenants=max_tenants,
        ttl_seconds=adapter_ttl_seconds,
    )
    # Adapters close after the server drained its calls, before the directory channel.
    on_stop.insert(0, connections.close)
    limits = limits or build_limits(settings, "storage")
    on_stop.extend(limits.closers)
    on_start: list[Callable[[], Awaitable[None]]] = []
    tenant_seen: Callable[[str], None] | None = None
    if settings.storage_reconcile_interval_seconds > 0:
        from services.storage.reconcile import MeteringBalance, StorageReconciler

        balance = MeteringBalance(settings)
        reconciler = StorageReconciler(
            connections, recorder, balance, interval_seconds=settings.storage_reconcile_interval_seconds
        )
        tenant_seen = reconciler.note
        on_start.append(reconciler.start)
        # Stopped before the adapters it lists close.
        on_stop[:0] = [reconciler.close, balance.close]
    quota = StorageQuota(limits.counters, limits.cache)
    stored = StoredBytes(recorder, quota, tenant_seen)
    servicer = StorageServicer(ObjectManager(connections, stored, quota), ItemManager(connections))
    return ServerSpec(
        name="storage",
        port=settings.storage_port,
        registrations=[
            Registration(
                storage_service_pb2_grpc.add_StorageServiceServicer_to_server, servicer, SERVICE_NAME
            )
        ],
        recorder=recorder,
        rate_limiter=limits.api,
        on_start=on_start,
        on_stop=on_stop,
    )
