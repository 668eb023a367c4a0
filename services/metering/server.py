"""MeteringService's wiring: store (migrated at start), plan resolver, servicer, policies and
its own usage recorder (LocalUsageRecorder: it never meters itself over gRPC)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from makoto.metering.v1 import metering_pb2, metering_pb2_grpc

from services.common.config import MeshSettings
from services.common.directory_client import TenantDirectory
from services.common.limits.wiring import build_limits
from services.common.metering_client import LocalUsageRecorder
from services.common.server import Registration, ServerSpec
from services.metering.adapters.sql_store import SqlMeteringStore
from services.metering.config import database_url
from services.metering.limits import TenantLimitsService
from services.metering.metering import Metering
from services.metering.plans import DirectoryPlanResolver
from services.metering.ports import PlanResolver, TenantGate
from services.metering.servicer import MeteringServicer, limits_to_proto
from services.metering.usage_consumer import JetStreamUsageConsumer


async def build(
    settings: MeshSettings,
    *,
    db_url: str | None = None,
    plans: PlanResolver | None = None,
    tenants: TenantGate | None = None,
) -> ServerSpec:
    """db_url: else MAKOTO_METERING_DB_URL, else SQLite at data_dir/metering.sqlite3.
    plans: else each tenant's price_plan_id from TenantService's directory.
    tenants: gate for tenant reads; by default the directory when plans come from it too (tests
    that inject plans run without TenantService and without the gate)."""
    store = await SqlMeteringStore.open(database_url(settings, db_url))
    on_stop: list[Callable[[], Awaitable[None]]] = [store.close]
    if plans is None:
        directory = TenantDirectory.from_settings(settings, "metering")
        plans = DirectoryPlanResolver(directory)
        tenants = tenants or directory
        on_stop.insert(0, directory.close)
    metering = Metering(store, store, plans)
    on_start: list[Callable[[], Awaitable[None]]] = []
    if settings.usage_transport == "jetstream":
        # Every replica consumes the shared stream; stopped before the store closes.
        consumer = JetStreamUsageConsumer(settings, metering)
        on_start.append(consumer.start)
        on_stop.insert(0, consumer.close)
    limits_service = TenantLimitsService(store, store, store, plans)

    async def own_limits(tenant_id: str) -> metering_pb2.TenantLimits:
        return limits_to_proto(await limits_service.view(tenant_id))

    # MeteringService answers limits itself; its tenant reads are rate limited like any call.
    limits = build_limits(settings, "metering", fetch=own_limits)
    limits_service.attach_live(limits.counters)
    on_stop.extend(limits.closers)
    return ServerSpec(
        name="metering",
        port=settings.metering_port,
        registrations=[
            Registration(
                add=metering_pb2_grpc.add_MeteringServiceServicer_to_server,
                servicer=MeteringServicer(metering, limits_service, tenants, store.audit),
                full_name=metering_pb2.DESCRIPTOR.services_by_name["MeteringService"].full_name,
            )
        ],
        recorder=LocalUsageRecorder(store),
        rate_limiter=limits.api,
        on_start=on_start,
        on_stop=on_stop,
    )
