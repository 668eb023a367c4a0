"""Wiring of the tenant server: database (migrated at start), store, provisioner, identity
provider, the two servicers, their policies and the usage recorder."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from makoto.tenant.v1 import directory_pb2, directory_pb2_grpc, tenant_pb2, tenant_pb2_grpc

from services.common.config import MeshSettings
from services.common.server import Registration, ServerSpec, token_state_for
from services.common.tenant_events import NatsLink
from services.common.usage import UsageRecorder
from services.tenant.adapters.local_identity import LocalIdentityProvider
from services.tenant.adapters.local_provisioner import LocalProvisioner
from services.tenant.adapters.sql_store import SqlTenantStore
from services.tenant.api_keys import ApiKeyManager
from services.tenant.db import database_url, make_engine, migrate
from services.tenant.directory import TenantDirectoryService
from services.tenant.events import NatsChangeNotifier
from services.tenant.policies import POLICIES
from services.tenant.service import TenantService
from services.tenant.tenants import TenantManager
from services.tenant.users import UserManager

RecorderFactory = Callable[[MeshSettings], UsageRecorder]


def spooling_recorder(settings: MeshSettings) -> UsageRecorder:
    # Imported here: the metering client is its own module, and tests run without it.
    from services.common.metering_client import SpoolingUsageRecorder

    return SpoolingUsageRecorder(settings, source="tenant")


async def build(
    settings: MeshSettings,
    *,
    db_url: str | None = None,
    recorder_factory: RecorderFactory | None = spooling_recorder,
) -> ServerSpec:
    """db_url overrides MAKOTO_TENANT_DB_URL; recorder_factory=None runs without metering."""
    engine = make_engine(db_url or database_url(settings))
    # Lifecycle push (MAKOTO_NATS_URL): connects in the background, never blocks the start.
    link = NatsLink(settings.nats_url, name="tenant") if settings.nats_url else None
    on_stop: list[Callable[[], Awaitable[None]]] = [engine.dispose]
    try:
        await migrate(engine)
        store = SqlTenantStore(engine)
        identity = LocalIdentityProvider(engine)
        notifier = None
        if link is not None:
            link.start()
            on_stop.insert(0, link.close)
            notifier = NatsChangeNotifier(link, settings.nats_subject_prefix)
        tenants = TenantManager(store, LocalProvisioner(settings.data_dir), identity, notifier)
        await tenants.recover()
        recorder = recorder_factory(settings) if recorder_factory is not None else None
        token_state = token_state_for(settings)
    except BaseException:
        for stop in on_stop:
            await stop()
        raise
    return ServerSpec(
        name="tenant",
        port=settings.tenant_port,
        registrations=[
            Registration(
                tenant_pb2_grpc.add_TenantServiceServicer_to_server,
                TenantService(
                    tenants,
                    UserManager(tenants, identity, token_state),
                    ApiKeyManager(engine, tenants, settings, token_state, recorder),
                ),
                tenant_pb2.DESCRIPTOR.services_by_name["TenantService"].full_name,
            ),
            Registration(
                directory_pb2_grpc.add_TenantDirectoryServiceServicer_to_server,
                TenantDirectoryService(tenants),
                directory_pb2.DESCRIPTOR.services_by_name["TenantDirectoryService"].full_name,
            ),
        ],
        policies=POLICIES,
        recorder=recorder,
        token_state=token_state,
        on_stop=on_stop,
    )
