"""AWS provisioning steps: the tenant's S3 bucket and DynamoDB table (in the account its binding
names), the tenant's Secrets Manager path and Cognito group (in the platform's account).

Every resource is tagged for cost allocation (`makoto:tenant`, `makoto:managed-by`). Settings
follow the architecture document: S3 with default encryption (SSE-S3, or SSE-KMS when the
binding's option kms_key_id is set), versioning and every public access block; DynamoDB on
demand with point-in-time recovery. Each apply() is create-if-missing and then sets the
settings again, so a re-run after a crash converges; each undo() removes what apply() made.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError
from makoto.tenant.v1 import tenant_pb2
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.bindings.aws_keys import aws_keys
from services.tenant.provisioning.workflow import StepFailed

MANAGED_BY = "makoto-platform"
_SESSION: aioboto3.Session | None = None


class SecretSource(Protocol):
    async def get(self, ref: str) -> SecretStr: ...


class PlatformAwsSettings(BaseSettings):
    """The platform's own AWS account (MAKOTO_AWS_*, as the aws-sm:// secret backend reads them)
    and what onboarding creates there. No user pool id: no Cognito group step."""

    model_config = SettingsConfigDict(env_prefix="MAKOTO_AWS_", extra="ignore")

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    cognito_user_pool_id: str = ""
    tenant_secrets_prefix: str = "makoto/tenants"
    # Secrets Manager path step: off unless set (a local mesh has no Secrets Manager).
    provision_secrets_path: bool = False


def _session() -> aioboto3.Session:
    global _SESSION
    if _SESSION is None:
        _SESSION = aioboto3.Session()
    return _SESSION


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def tags(tenant_id: str) -> dict[str, str]:
    return {"makoto:tenant": tenant_id, "makoto:managed-by": MANAGED_BY}


@dataclass(frozen=True)
class AwsTarget:
    """Where a step's calls go: endpoint, region and a credentials secret reference (or None for
    the given static keys / the SDK's default chain)."""

    endpoint_url: str | None
    region: str
    credentials_ref: str = ""
    access_key_id: str | None = None
    secret_access_key: str | None = None


def parse_keys(secret: str) -> tuple[str, str, str | None]:
    """JSON {"access_key_id", "secret_access_key", "session_token"?} or KEY_ID:SECRET (the shapes
    the storage adapters read)."""
    keys = aws_keys(secret)
    if keys is not None:
        return keys
    raise StepFailed("the binding's credentials secret has an unknown shape")


class AwsStep:
    """Shared plumbing: one client per step, created on first use, closed by close()."""

    service = ""

    def __init__(self, tenant_id: str, target: AwsTarget, secrets: SecretSource) -> None:
        self.tenant_id = tenant_id
        self._target = target
        self._secrets = secrets
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def client(self) -> Any:
        if self._client is None:
            key_id, secret_key, token = self._target.access_key_id, self._target.secret_access_key, None
            if self._target.credentials_ref:
                secret = await self._secrets.get(self._target.credentials_ref)
                key_id, secret_key, token = parse_keys(secret.get_secret_value())
            config = Config(
                region_name=self._target.region,
                s3={"addressing_style": "path"} if self._target.endpoint_url else {},
                retries={"mode": "standard", "max_attempts": 4},
                connect_timeout=5,
                read_timeout=30,
            )
            self._client = await self._stack.enter_async_context(
                _session().client(
                    self.service,
                    endpoint_url=self._target.endpoint_url,
                    region_name=self._target.region,
                    aws_access_key_id=key_id,
                    aws_secret_access_key=secret_key,
                    aws_session_token=token,
                    config=config,
                )
            )
        return self._client

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()


class S3BucketStep(AwsStep):
    service = "s3"

    def __init__(
        self, tenant_id: str, target: AwsTarget, secrets: SecretSource, bucket: str, kms_key_id: str = ""
    ) -> None:
        super().__init__(tenant_id, target, secrets)
        self.bucket = bucket
        self._kms_key_id = kms_key_id

    @property
    def name(self) -> str:
        return f"aws.s3_bucket:{self.bucket}"

    async def exists(self) -> bool:
        s3 = await self.client()
        try:
            await s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                return False
            raise
        return True

    async def apply(self) -> None:
        s3 = await self.client()
        params: dict[str, Any] = {"Bucket": self.bucket}
        if self._target.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self._target.region}
        try:
            await s3.create_bucket(**params)
        except ClientError as exc:
            if error_code(exc) != "BucketAlreadyOwnedByYou":
                raise
        rule: dict[str, Any] = {"SSEAlgorithm": "AES256"}
        if self._kms_key_id:
            rule = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": self._kms_key_id}
        await s3.put_bucket_encryption(
            Bucket=self.bucket,
            ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]},
        )
        await s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        await s3.put_public_access_block(
            Bucket=self.bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        await s3.put_bucket_tagging(
            Bucket=self.bucket,
            Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags(self.tenant_id).items()]},
        )

    async def undo(self) -> None:
        s3 = await self.client()
        try:
            # Every version and delete marker (the bucket is versioned), then the bucket.
            paginator = s3.get_paginator("list_object_versions")
            async for page in paginator.paginate(Bucket=self.bucket):
                targets = [
                    {"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
                ]
                if targets:
                    await s3.delete_objects(Bucket=self.bucket, Delete={"Objects": targets, "Quiet": True})
            uploads = await s3.list_multipart_uploads(Bucket=self.bucket)
            for upload in uploads.get("Uploads", []):
                await s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
            await s3.delete_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if error_code(exc) != "NoSuchBucket":
                raise


class DynamoDbTableStep(AwsStep):
    service = "dynamodb"

    def __init__(self, tenant_id: str, target: AwsTarget, secrets: SecretSource, table: str) -> None:
        super().__init__(tenant_id, target, secrets)
        self.table = table

    @property
    def name(self) -> str:
        return f"aws.dynamodb_table:{self.table}"

    async def _describe(self) -> Mapping[str, Any] | None:
        ddb = await self.client()
        try:
            answer = await ddb.describe_table(TableName=self.table)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        table: Mapping[str, Any] = answer["Table"]
        return table

    async def exists(self) -> bool:
        return await self._describe() is not None

    async def apply(self) -> None:
        ddb = await self.client()
        # The key schema the DynamoDB item adapter uses (services/storage/adapters/dynamodb_items).
        try:
            await ddb.create_table(
                TableName=self.table,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                Tags=[{"Key": k, "Value": v} for k, v in tags(self.tenant_id).items()],
            )
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":
                raise
        description = await self._wait_active()
        keys = {k["AttributeName"]: k["KeyType"] for k in description.get("KeySchema", [])}
        if keys != {"pk": "HASH", "sk": "RANGE"}:
            raise StepFailed(f"table {self.table} exists with another key schema")
        await ddb.update_continuous_backups(
            TableName=self.table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
        await ddb.tag_resource(
            ResourceArn=description["TableArn"],
            Tags=[{"Key": k, "Value": v} for k, v in tags(self.tenant_id).items()],
        )

    async def _wait_active(self) -> Mapping[str, Any]:
        for _ in range(120):
            description = await self._describe()
            if description is not None and description.get("TableStatus") == "ACTIVE":
                return description
            await asyncio.sleep(0.5)
        raise StepFailed(f"table {self.table} did not become ACTIVE")

    async def undo(self) -> None:
        ddb = await self.client()
        try:
            await ddb.delete_table(TableName=self.table)
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise


class SecretsPathStep(AwsStep):
    """The tenant's path in the platform's Secrets Manager (`<prefix>/<tenant>/`), marked by one
    tagged placeholder secret so the path exists, carries the tenant's tags, and offboarding has
    a place to start from. Offboarding removes every secret under the path."""

    service = "secretsmanager"

    def __init__(self, tenant_id: str, target: AwsTarget, secrets: SecretSource, prefix: str) -> None:
        super().__init__(tenant_id, target, secrets)
        self.path = f"{prefix.rstrip('/')}/{tenant_id}/"

    @property
    def name(self) -> str:
        return f"aws.secrets_path:{self.path}"

    @property
    def marker(self) -> str:
        return f"{self.path}_tenant"

    async def exists(self) -> bool:
        return bool(await self._names())

    async def _names(self) -> list[str]:
        sm = await self.client()
        names: list[str] = []
        paginator = sm.get_paginator("list_secrets")
        async for page in paginator.paginate(
            Filters=[{"Key": "name", "Values": [self.path]}], IncludePlannedDeletion=False
        ):
            names.extend(s["Name"] for s in page.get("SecretList", []) if s["Name"].startswith(self.path))
        return names

    async def apply(self) -> None:
        sm = await self.client()
        try:
            await sm.create_secret(
                Name=self.marker,
                SecretString=json.dumps({"tenant_id": self.tenant_id}),
                Tags=[{"Key": k, "Value": v} for k, v in tags(self.tenant_id).items()],
            )
        except ClientError as exc:
            if error_code(exc) != "ResourceExistsException":
                raise

    async def undo(self) -> None:
        sm = await self.client()
        for name in await self._names():
            try:
                await sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise


class CognitoGroupStep(AwsStep):
    """The tenant's group in the platform's Cognito user pool (`tenant-<id>`)."""

    service = "cognito-idp"

    def __init__(self, tenant_id: str, target: AwsTarget, secrets: SecretSource, user_pool_id: str) -> None:
        super().__init__(tenant_id, target, secrets)
        self.user_pool_id = user_pool_id
        self.group = f"tenant-{tenant_id}"

    @property
    def name(self) -> str:
        return f"aws.cognito_group:{self.group}"

    async def exists(self) -> bool:
        idp = await self.client()
        try:
            await idp.get_group(GroupName=self.group, UserPoolId=self.user_pool_id)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return False
            raise
        return True

    async def apply(self) -> None:
        idp = await self.client()
        try:
            await idp.create_group(
                GroupName=self.group,
                UserPoolId=self.user_pool_id,
                Description=f"MAKOTO tenant {self.tenant_id}",
            )
        except ClientError as exc:
            if error_code(exc) != "GroupExistsException":
                raise

    async def undo(self) -> None:
        idp = await self.client()
        try:
            await idp.delete_group(GroupName=self.group, UserPoolId=self.user_pool_id)
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise


def object_target(binding: tenant_pb2.ObjectStoreBinding) -> AwsTarget:
    return AwsTarget(binding.endpoint or None, binding.region or "us-east-1", binding.credentials_secret_ref)


def item_target(binding: tenant_pb2.ItemStoreBinding) -> AwsTarget:
    return AwsTarget(binding.endpoint or None, binding.region or "us-east-1", binding.credentials_secret_ref)


def platform_target(settings: PlatformAwsSettings) -> AwsTarget:
    return AwsTarget(
        settings.endpoint_url,
        settings.region,
        access_key_id=settings.access_key_id,
        secret_access_key=settings.secret_access_key.get_secret_value()
        if settings.secret_access_key
        else None,
    )
