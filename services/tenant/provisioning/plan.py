"""Which steps a tenant's provisioning runs, from its bindings and cloud provider.

- always: the tenant's local directory (the embedded defaults' objects and SQLite items);
- a binding with option `managed = "true"` is created and owned by the platform: an S3 bucket,
  a DynamoDB table, an Azure Blob container or a Cosmos DB database (names from the binding,
  else the platform's naming convention, the same the storage adapters use). Without it a
  cloud binding names a resource the tenant brings: nothing is created or removed (the
  behaviour before the workflow existed);
- an AWS tenant also gets its Secrets Manager path (when MAKOTO_AWS_PROVISION_SECRETS_PATH);
- every tenant gets its Cognito group when MAKOTO_AWS_COGNITO_USER_POOL_ID names the platform's
  user pool (tenant users live there whatever cloud the tenant's data is on);
- an Azure tenant gets its secret names in the platform's Key Vault (when
  MAKOTO_AZURE_TENANT_KEY_VAULT_URL names it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from makoto.tenant.v1 import tenant_pb2

from services.tenant.adapters.local_provisioner import LocalProvisioner
from services.tenant.model import CloudProvider, TenantRecord
from services.tenant.provisioning import aws, azure
from services.tenant.provisioning.local_step import LocalDirectoryStep
from services.tenant.provisioning.workflow import Step


def managed(options: Mapping[str, str]) -> bool:
    return options.get("managed", "").lower() == "true"


def default_bucket(tenant_id: str) -> str:
    # Imported late: the storage adapter's naming rule (length-safe) is the one source of truth.
    from services.storage.adapters.s3.config import default_bucket as s3_default_bucket

    return s3_default_bucket(tenant_id)


class Planner:
    def __init__(
        self,
        local: LocalProvisioner,
        secrets: aws.SecretSource,
        platform_aws: aws.PlatformAwsSettings | None = None,
        platform_azure: azure.PlatformAzureSettings | None = None,
    ) -> None:
        self._local = local
        self._secrets = secrets
        self._aws = platform_aws or aws.PlatformAwsSettings()
        self._azure = platform_azure or azure.PlatformAzureSettings()

    def __call__(self, tenant: TenantRecord) -> Sequence[Step]:
        steps: list[Step] = [LocalDirectoryStep(self._local, tenant)]
        tid = tenant.tenant_id
        objects, items = tenant.bindings.object_store, tenant.bindings.item_store
        if objects.backend == tenant_pb2.OBJECT_BACKEND_S3 and managed(objects.options):
            steps.append(
                aws.S3BucketStep(
                    tid,
                    aws.object_target(objects),
                    self._secrets,
                    objects.bucket or default_bucket(tid),
                    kms_key_id=objects.options.get("kms_key_id", ""),
                )
            )
        if items.backend == tenant_pb2.ITEM_BACKEND_DYNAMODB and managed(items.options):
            table = items.database or f"makoto-{tid}-items"
            steps.append(aws.DynamoDbTableStep(tid, aws.item_target(items), self._secrets, table))
        if objects.backend == tenant_pb2.OBJECT_BACKEND_AZURE_BLOB and managed(objects.options):
            steps.append(azure.BlobContainerStep(tid, objects, self._secrets))
        if items.backend == tenant_pb2.ITEM_BACKEND_COSMOS and managed(items.options):
            steps.append(azure.CosmosDatabaseStep(tid, items, self._secrets))
        target = aws.platform_target(self._aws)
        if tenant.cloud_provider == CloudProvider.AWS and self._aws.provision_secrets_path:
            steps.append(aws.SecretsPathStep(tid, target, self._secrets, self._aws.tenant_secrets_prefix))
        if self._aws.cognito_user_pool_id:
            # Every tenant's users live in the platform's pool (whatever cloud its data is on),
            # so every tenant gets its group, and offboarding removes it.
            steps.append(aws.CognitoGroupStep(tid, target, self._secrets, self._aws.cognito_user_pool_id))
        if tenant.cloud_provider == CloudProvider.AZURE and self._azure.key_vault_url:
            steps.append(azure.KeyVaultSecretsStep(tid, self._azure))
        return steps
