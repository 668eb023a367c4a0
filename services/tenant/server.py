"""Wiring of the tenant server: database (migrated at start), store, provisioner, identity
provider, the two servicers, their policies and the usage recorder."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from makoto.tenant.v1 import directory_pb2, directory_pb2_grpc, tenant_pb2, tenant_pb2_grpc

from services.common.bindings.egress import EgressPolicy
from services.common.config import MeshSettings
from services.common.secrets.resolver import SecretResolver
from services.common.server import Registration, ServerSpec, token_state_for
from services.common.tenant_events import NatsLink
from services.common.usage import UsageRecorder
from services.tenant.adapters.cognito_identity import CognitoIdentityProvider
from services.tenant.adapters.local_identity import LocalIdentityProvider
from services.tenant.adapters.local_provisioner import LocalProvisioner
from services.tenant.adapters.sql_store import SqlTenantStore
from services.tenant.api_keys import ApiKeyManager
from services.tenant.db import database_url, make_engine, migrate
from services.tenant.directory import TenantDirectoryService
from services.tenant.events import NatsChangeNotifier
from services.tenant.offboarding.erasure import Erasure
from services.tenant.offboarding.export import TenantExporter
from services.tenant.offboarding.links import LinkSigner, local_key
from services.tenant.offboarding.metering_eraser import MeteringUsageEraser
from services.tenant.offboarding.runner import ExportSettings, Offboarder
from services.tenant.onboarding import Onboarder
from services.tenant.operations import OperationReader
from services.tenant.ports import IdentityProvider
from services.tenant.provisioning.aws import PlatformAwsSettings, platform_target
from services.tenant.provisioning.journal import SqlJournal
from services.tenant.provisioning.plan import Planner
from services.tenant.provisioning.workflow import WorkflowProvisioner
from services.tenant.residency import ResidencyPolicy
from services.tenant.revocations import TokenRevocations
from services.tenant.service import TenantService
from services.tenant.tenants import TenantManager
from services.tenant.users import UserManager

RecorderFactory = Callable[[MeshSettings], UsageRecorder]


def spooling_recorder(settings: MeshSettings) -> UsageRecorder:
    # Imported here: the metering client is its own module, and tests run without it.
    from services.common.usage_jetstream import usage_recorder

    return usage_recorder(settings, "tenant")


async def build(
    settings: MeshSettings,
    *,
    db_url: str | None = None,
    recorder_factory: RecorderFactory | None = spooling_recorder,
    usage_eraser_factory: Callable[[MeshSettings], MeteringUsageEraser] | None = MeteringUsageEraser,
) -> ServerSpec:
    """db_url overrides MAKOTO_TENANT_DB_URL; recorder_factory=None runs without metering (and
    so does usage_eraser_factory=None: erasure then leaves usage to be erased by other means)."""
    engine = make_engine(db_url or database_url(settings))
    # Lifecycle push (MAKOTO_NATS_URL): connects in the background, never blocks the start.
    link = NatsLink(settings.nats_url, name="tenant") if settings.nats_url else None
    on_stop: list[Callable[[], Awaitable[None]]] = [engine.dispose]
    try:
        await migrate(engine)
        store = SqlTenantStore(engine)
        platform_aws = PlatformAwsSettings()
        identity: IdentityProvider
        if platform_aws.cognito_user_pool_id:
            # Tenant users live in the platform's Cognito user pool (tokens come from Cognito).
            cognito = CognitoIdentityProvider(
                platform_target(platform_aws), platform_aws.cognito_user_pool_id
            )
            on_stop.append(cognito.close)
            identity = cognito
        else:
            identity = LocalIdentityProvider(engine)
        notifier = None
        if link is not None:
            link.start()
            on_stop.insert(0, link.close)
            notifier = NatsChangeNotifier(link, settings.nats_subject_prefix)
        # Provisioning runs as journaled steps (services/tenant/provisioning): resumed by recover().
        secrets = SecretResolver.for_settings(settings)
        planner = Planner(LocalProvisioner(settings.data_dir), secrets, platform_aws)
        journal = SqlJournal(engine)
        provisioner = WorkflowProvisioner(planner, journal)
        # Offboarding: export location, link key, and MeteringService's erasure of usage (absent
        # when this server runs without metering).
        export_settings = ExportSettings()
        exporter = TenantExporter(settings, secrets, export_settings.root(settings))
        usage_eraser = (
            usage_eraser_factory(settings)
            if recorder_factory is not None and usage_eraser_factory is not None
            else None
        )
        if usage_eraser is not None:
            on_stop.append(usage_eraser.close)
        erasure = Erasure(journal, engine, identity, provisioner, usage_eraser, exporter)
        development = settings.profile == "development"
        tenants = TenantManager(
            store,
            provisioner,
            identity,
            notifier,
            EgressPolicy(settings.egress_allow),
            erasure=erasure,
            residency_policy=ResidencyPolicy(settings.platform_region, development=development),
            allow_auto_provision=development,
        )
        key = (
            (await secrets.get(export_settings.signing_key_ref)).get_secret_value().encode()
            if export_settings.signing_key_ref
            else local_key(settings.keys_dir)
        )
        offboarder = Offboarder(tenants, journal, exporter, LinkSigner(key), export_settings.link_ttl_seconds)
        on_stop.insert(0, offboarder.close)
        onboarder = Onboarder(tenants, journal)
        on_stop.insert(0, onboarder.close)
        await tenants.recover()
        await offboarder.recover()
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
                    OperationReader(tenants, journal, offboarder),
                    ApiKeyManager(engine, tenants, settings, token_state, recorder),
                    offboarder,
                    TokenRevocations(tenants, token_state),
                    onboarder,
                ),
                tenant_pb2.DESCRIPTOR.services_by_name["TenantService"].full_name,
            ),
            Registration(
                directory_pb2_grpc.add_TenantDirectoryServiceServicer_to_server,
                TenantDirectoryService(tenants, identity),
                directory_pb2.DESCRIPTOR.services_by_name["TenantDirectoryService"].full_name,
            ),
        ],
        recorder=recorder,
        token_state=token_state,
        # Subjects are checked against this server's own user store (no directory round trip).
        users=identity,
        on_stop=on_stop,
    )
