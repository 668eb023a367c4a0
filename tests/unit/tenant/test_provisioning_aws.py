"""Provisioning as a journaled workflow against moto server: an AWS tenant's S3 bucket, DynamoDB
table, Secrets Manager path and Cognito group with the platform's settings; compensation of a
failed step; resumption after the process dies at any step; offboarding removes it all.
Every check of a resource is made with boto3 against moto, not through our own code."""

from __future__ import annotations

import functools
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
import grpc
import pytest
from google.protobuf import field_mask_pb2
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.bindings.egress import EgressPolicy
from services.common.config import MeshSettings
from services.common.secrets.resolver import SecretResolver
from services.storage.adapters.s3 import S3ObjectStore, config_from_binding
from services.tenant.adapters.local_identity import LocalIdentityProvider
from services.tenant.adapters.local_provisioner import LocalProvisioner
from services.tenant.adapters.sql_store import SqlTenantStore
from services.tenant.db import make_engine, migrate
from services.tenant.model import CloudProvider, State, TenantSpec
from services.tenant.provisioning.aws import PlatformAwsSettings
from services.tenant.provisioning.journal import OperationState, SqlJournal, StepState
from services.tenant.provisioning.plan import Planner
from services.tenant.provisioning.workflow import Step, WorkflowProvisioner
from services.tenant.server import build
from services.tenant.tenants import TenantManager
from tests.contract.emulators import MOTO_CREDENTIALS, Emulator, moto_server  # noqa: F401
from tests.support import bearer, direct_channel

_ids = itertools.count()


def new_tenant() -> str:
    return f"aws-{uuid.uuid4().hex[:8]}-{next(_ids)}"


@dataclass
class Aws:
    endpoint: str
    pool_id: str

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=MOTO_CREDENTIALS["access_key_id"],
            aws_secret_access_key=MOTO_CREDENTIALS["secret_access_key"],
        )


@pytest.fixture(scope="module")
def aws(moto_server: Emulator) -> Aws:  # noqa: F811
    idp = boto3.client(
        "cognito-idp",
        endpoint_url=moto_server.endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )
    pool = idp.create_user_pool(PoolName=f"makoto-platform-{uuid.uuid4().hex[:6]}")
    return Aws(moto_server.endpoint, pool["UserPool"]["Id"])


@pytest.fixture
def platform_env(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "MAKOTO_AWS_ENDPOINT_URL": aws.endpoint,
        "MAKOTO_AWS_REGION": "us-east-1",
        "MAKOTO_AWS_ACCESS_KEY_ID": MOTO_CREDENTIALS["access_key_id"],
        "MAKOTO_AWS_SECRET_ACCESS_KEY": MOTO_CREDENTIALS["secret_access_key"],
        "MAKOTO_AWS_COGNITO_USER_POOL_ID": aws.pool_id,
        "MAKOTO_AWS_PROVISION_SECRETS_PATH": "true",
    }.items():
        monkeypatch.setenv(name, value)
    yield


def credentials_ref(settings: MeshSettings, tenant_id: str) -> str:
    """The tenant's own secret (bindings may only name secrets in the tenant's scope)."""
    return SecretResolver.for_settings(settings).set(
        f"tenants/{tenant_id}/aws-keys", json.dumps(MOTO_CREDENTIALS)
    )


def aws_bindings(endpoint: str, ref: str, **extra: str) -> tenant_pb2.TenantBindings:
    return tenant_pb2.TenantBindings(
        object_store=tenant_pb2.ObjectStoreBinding(
            backend=tenant_pb2.OBJECT_BACKEND_S3,
            endpoint=endpoint,
            region="us-east-1",
            path_style=True,
            credentials_secret_ref=ref,
            options={"managed": "true", **extra},
        ),
        item_store=tenant_pb2.ItemStoreBinding(
            backend=tenant_pb2.ITEM_BACKEND_DYNAMODB,
            endpoint=endpoint,
            region="us-east-1",
            credentials_secret_ref=ref,
            options={"managed": "true"},
        ),
    )


def names(tenant_id: str) -> dict[str, str]:
    return {
        "bucket": f"makoto-{tenant_id}-assets",
        "table": f"makoto-{tenant_id}-items",
        "secret": f"makoto/tenants/{tenant_id}/_tenant",
        "group": f"tenant-{tenant_id}",
    }


def remains(aws: Aws, tenant_id: str) -> dict[str, bool]:
    """What of the tenant exists at moto, asked with boto3."""
    n = names(tenant_id)
    s3, ddb, sm, idp = (aws.client(s) for s in ("s3", "dynamodb", "secretsmanager", "cognito-idp"))
    buckets = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    tables = set(ddb.list_tables()["TableNames"])
    secrets = {s["Name"] for s in sm.list_secrets()["SecretList"]}
    groups = {g["GroupName"] for g in idp.list_groups(UserPoolId=aws.pool_id)["Groups"]}
    return {
        "bucket": n["bucket"] in buckets,
        "table": n["table"] in tables,
        "secret": n["secret"] in secrets,
        "group": n["group"] in groups,
    }


def assert_configured(aws: Aws, tenant_id: str) -> None:
    n = names(tenant_id)
    s3, ddb, sm = aws.client("s3"), aws.client("dynamodb"), aws.client("secretsmanager")
    want_tags = {"makoto:tenant": tenant_id, "makoto:managed-by": "makoto-platform"}
    sse = s3.get_bucket_encryption(Bucket=n["bucket"])["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert sse["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_bucket_versioning(Bucket=n["bucket"])["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=n["bucket"])["PublicAccessBlockConfiguration"]
    assert block == {
        k: True for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
    }
    assert {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=n["bucket"])["TagSet"]} == want_tags
    table = ddb.describe_table(TableName=n["table"])["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    pitr = ddb.describe_continuous_backups(TableName=n["table"])["ContinuousBackupsDescription"]
    assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    tags = ddb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == want_tags
    secret = sm.describe_secret(SecretId=n["secret"])
    assert {t["Key"]: t["Value"] for t in secret["Tags"]} == want_tags


# -- through TenantService's API -----------------------------------------------------------------


@dataclass
class Api:
    settings: MeshSettings
    stub: tenant_pb2_grpc.TenantServiceStub

    @property
    def admin(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.settings, "platform-admin")


@pytest.fixture
async def api(settings: MeshSettings, platform_env: None) -> AsyncIterator[Api]:
    from tests.support import running_server

    url = f"sqlite+aiosqlite:///{settings.data_dir / 'tenant.sqlite3'}"
    async with running_server(functools.partial(build, db_url=url, recorder_factory=None), settings):
        async with direct_channel(settings.address("tenant")) as channel:
            yield Api(settings, tenant_pb2_grpc.TenantServiceStub(channel))


async def test_aws_tenant_is_provisioned_with_the_platform_settings_used_and_offboarded(
    api: Api, aws: Aws
) -> None:
    tid = new_tenant()
    ref = credentials_ref(api.settings, tid)
    created = await api.stub.CreateTenant(
        tenant_pb2.CreateTenantRequest(
            tenant=tenant_pb2.Tenant(
                tenant_id=tid,
                cloud_provider=tenant_pb2.CLOUD_PROVIDER_AWS,
                bindings=aws_bindings(aws.endpoint, ref),
            )
        ),
        metadata=api.admin,
    )
    assert created.state == tenant_pb2.TENANT_STATE_ACTIVE, created.state_reason
    assert remains(aws, tid) == {"bucket": True, "table": True, "secret": True, "group": True}
    assert_configured(aws, tid)

    # The storage adapter works on what was provisioned, without auto_provision.
    binding = created.bindings.object_store
    store = S3ObjectStore(config_from_binding(tid, binding, MOTO_CREDENTIALS))
    try:
        await store.put("docs/a.txt", _chunks(b"hello"), content_type="text/plain", user_metadata={})
    finally:
        await store.close()
    assert (
        aws.client("s3").get_object(Bucket=names(tid)["bucket"], Key="docs/a.txt")["Body"].read() == b"hello"
    )

    deleted = await api.stub.DeleteTenant(tenant_pb2.DeleteTenantRequest(tenant_id=tid), metadata=api.admin)
    assert deleted.state == tenant_pb2.TENANT_STATE_DELETED
    assert remains(aws, tid) == {"bucket": False, "table": False, "secret": False, "group": False}


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_failed_step_removes_what_was_created_and_names_the_step(
    api: Api, aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    tid = new_tenant()
    ref = credentials_ref(api.settings, tid)
    # A bucket the tenant brought stays: compensation removes only what the workflow created.
    s3 = aws.client("s3")
    own = f"byo-{tid}"
    s3.create_bucket(Bucket=own)
    bindings = aws_bindings(aws.endpoint, ref)
    bindings.object_store.bucket = own
    # The DynamoDB step fails: a table of that name exists with another key schema.
    aws.client("dynamodb").create_table(
        TableName=names(tid)["table"],
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    created = await api.stub.CreateTenant(
        tenant_pb2.CreateTenantRequest(
            tenant=tenant_pb2.Tenant(
                tenant_id=tid, cloud_provider=tenant_pb2.CLOUD_PROVIDER_AWS, bindings=bindings
            )
        ),
        metadata=api.admin,
    )
    assert created.state == tenant_pb2.TENANT_STATE_FAILED
    assert created.state_reason.startswith(f"step aws.dynamodb_table:makoto-{tid}-items failed: ")
    assert "another key schema" in created.state_reason
    # the pre-existing table is the tenant's (preexisting): kept; so is the tenant's bucket
    left = remains(aws, tid)
    assert (left["secret"], left["group"]) == (False, False)
    assert own in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert names(tid)["table"] in aws.client("dynamodb").list_tables()["TableNames"]

    # The operation says the same: done, error naming the step, step-level progress.
    listed = await api.stub.ListOperations(
        tenant_pb2.ListOperationsRequest(tenant_id=tid), metadata=api.admin
    )
    [operation] = listed.operations
    assert operation.done and operation.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert operation.error.message == created.state_reason
    metadata = tenant_pb2.ProvisioningMetadata()
    assert operation.metadata.Unpack(metadata)
    assert metadata.failed_step == f"aws.dynamodb_table:makoto-{tid}-items"
    steps = {s.name.split(":")[0]: (s.state, s.preexisting) for s in metadata.steps}
    assert steps == {
        "local.tenant_directory": (tenant_pb2.STEP_STATE_REMOVED, False),
        "aws.s3_bucket": (tenant_pb2.STEP_STATE_DONE, True),  # the tenant's own: left alone
        "aws.dynamodb_table": (tenant_pb2.STEP_STATE_FAILED, True),
    }
    again = await api.stub.GetOperation(
        tenant_pb2.GetOperationRequest(tenant_id=tid, operation_id=operation.name.rsplit("/", 1)[1]),
        metadata=bearer(api.settings, "tenant-admin", tid),
    )
    assert again == operation


# -- the process dies at any step ----------------------------------------------------------------


class SimulatedKill(BaseException):
    """Stands for kill -9: nothing after it runs (not caught by `except Exception`)."""


class Dying:
    """A step that dies before or after its resource is created."""

    def __init__(self, inner: Step, when: str) -> None:
        self._inner, self._when = inner, when

    @property
    def name(self) -> str:
        return self._inner.name

    async def exists(self) -> bool:
        return await self._inner.exists()

    async def apply(self) -> None:
        if self._when == "before":
            raise SimulatedKill
        await self._inner.apply()
        raise SimulatedKill

    async def undo(self) -> None:
        await self._inner.undo()

    async def close(self) -> None:
        await self._inner.close()


STEP_KINDS = ("local.", "aws.s3_bucket", "aws.dynamodb_table", "aws.secrets_path", "aws.cognito_group")


@pytest.mark.parametrize("when", ["before", "after"])
async def test_provisioning_resumes_after_dying_at_every_step(
    settings: MeshSettings, aws: Aws, platform_env: None, when: str
) -> None:
    """The process dies at step 1, restarts and dies at step 2, ... then a clean restart
    finishes: each step is interrupted once, before its resource exists or after it was made
    but before the journal said DONE."""
    engine = make_engine(f"sqlite+aiosqlite:///{settings.data_dir / 'tenant.sqlite3'}")
    await migrate(engine)
    planner = Planner(
        LocalProvisioner(settings.data_dir), SecretResolver.for_settings(settings), PlatformAwsSettings()
    )

    def dying_at(kill_at: int) -> Any:
        def plan(tenant: Any) -> Sequence[Step]:
            steps = list(planner(tenant))
            assert [s.name.startswith(k) for s, k in zip(steps, STEP_KINDS, strict=True)] == [True] * len(
                steps
            )
            steps[kill_at] = Dying(steps[kill_at], when)
            return steps

        return plan

    def manager(plan: Any) -> TenantManager:
        journal = SqlJournal(engine)
        return TenantManager(
            SqlTenantStore(engine),
            WorkflowProvisioner(plan, journal),
            LocalIdentityProvider(engine),
            egress=EgressPolicy(settings.egress_allow),  # moto on loopback
        )

    tid = new_tenant()
    spec = TenantSpec(
        tenant_id=tid,
        cloud_provider=CloudProvider.AWS,
        bindings=aws_bindings(aws.endpoint, credentials_ref(settings, tid)),
    )
    store = SqlTenantStore(engine)
    try:
        with pytest.raises(SimulatedKill):
            await manager(dying_at(0)).create(spec, request_id="")
        for kill_at in range(1, len(STEP_KINDS)):
            with pytest.raises(SimulatedKill):
                await manager(dying_at(kill_at)).recover()  # a restart that dies again
            stuck = await store.get(tid)
            assert stuck is not None and stuck.state == State.PROVISIONING
            steps = await SqlJournal(engine).steps(tid)
            assert [r.state for r in steps][:kill_at] == [StepState.DONE] * kill_at

        await manager(planner).recover()  # what a restart runs

        tenant = await store.get(tid)
        assert tenant is not None and tenant.state == State.ACTIVE, tenant.state_reason if tenant else None
        assert remains(aws, tid) == {"bucket": True, "table": True, "secret": True, "group": True}
        assert_configured(aws, tid)
        journal = SqlJournal(engine)
        assert [(r.step.split(":")[0], r.state) for r in await journal.steps(tid)] == [
            (k.rstrip("."), StepState.DONE) if k != "local." else ("local.tenant_directory", StepState.DONE)
            for k in STEP_KINDS
        ]
        # the resumed run finished the operation the dead one opened
        assert [o.state for o in await journal.operations_of(tid)] == [OperationState.SUCCEEDED]
        await manager(planner).delete(tid, etag="")
        assert remains(aws, tid) == {"bucket": False, "table": False, "secret": False, "group": False}
    finally:
        await engine.dispose()


async def test_a_failed_rebind_leaves_the_live_resources_alone(api: Api, aws: Aws) -> None:
    tid = new_tenant()
    ref = credentials_ref(api.settings, tid)
    first = aws_bindings(aws.endpoint, ref)
    first.ClearField("item_store")  # SQLite items at first
    created = await api.stub.CreateTenant(
        tenant_pb2.CreateTenantRequest(
            tenant=tenant_pb2.Tenant(
                tenant_id=tid, cloud_provider=tenant_pb2.CLOUD_PROVIDER_AWS, bindings=first
            )
        ),
        metadata=api.admin,
    )
    assert created.state == tenant_pb2.TENANT_STATE_ACTIVE, created.state_reason
    s3 = aws.client("s3")
    s3.put_object(Bucket=names(tid)["bucket"], Key="keep.txt", Body=b"live data")
    # Re-bind items to a managed DynamoDB table whose step fails (another key schema).
    aws.client("dynamodb").create_table(
        TableName=names(tid)["table"],
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.stub.UpdateTenant(
            tenant_pb2.UpdateTenantRequest(
                tenant=tenant_pb2.Tenant(tenant_id=tid, bindings=aws_bindings(aws.endpoint, ref)),
                update_mask=field_mask_pb2.FieldMask(paths=["bindings.item_store"]),
            ),
            metadata=api.admin,
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "aws.dynamodb_table" in (err.value.details() or "")
    # The bucket, its object, the secrets path and the group from the first run are all there.
    assert s3.get_object(Bucket=names(tid)["bucket"], Key="keep.txt")["Body"].read() == b"live data"
    assert remains(aws, tid) == {"bucket": True, "table": True, "secret": True, "group": True}
    after = await api.stub.GetTenant(tenant_pb2.GetTenantRequest(tenant_id=tid), metadata=api.admin)
    assert after.state == tenant_pb2.TENANT_STATE_ACTIVE
    assert after.bindings.item_store.backend == tenant_pb2.ITEM_BACKEND_SQLITE
