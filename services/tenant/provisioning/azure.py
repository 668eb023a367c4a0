"""Azure provisioning steps: the tenant's Blob container, its Cosmos DB database + container, and
its secret names in the platform's Key Vault.

They drive the storage adapters' own idempotent provision()/deprovision(), so the resources are
exactly what the adapters read: a Blob container named by the binding (else
the adapter's default container name), a Cosmos database named by the binding (else `makoto-<tenant>`) with
the `items` container partitioned on `/pk`.

Why `/pk` and not the architecture document's `/tenantId`: each tenant has its own container,
so `/tenantId` would have one value there and put all of a tenant's items in one logical
partition (20 GB and ~10k RU/s at most); `/pk` (the item's partition key) spreads them, and the
tenant boundary is the container itself. The adapter already writes `/pk`.
"""

from __future__ import annotations

from typing import Any

from makoto.tenant.v1 import tenant_pb2
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.tenant.provisioning.aws import SecretSource
from services.tenant.provisioning.workflow import StepFailed


class _AdapterStep:
    """A step that drives a storage adapter's own provision()/deprovision(); the adapter is
    built from the tenant's binding and its secret on first use."""

    def __init__(self, tenant_id: str, secrets: SecretSource, secret_ref: str) -> None:
        self.tenant_id = tenant_id
        self._secrets = secrets
        self._secret_ref = secret_ref
        self._store: Any = None

    async def _secret(self) -> str | None:
        if not self._secret_ref:
            return None
        return (await self._secrets.get(self._secret_ref)).get_secret_value()

    async def _build(self) -> Any:
        raise NotImplementedError

    async def _open(self) -> Any:
        if self._store is None:
            self._store = await self._build()
        return self._store

    async def apply(self) -> None:
        await (await self._open()).provision()

    async def undo(self) -> None:
        await (await self._open()).deprovision()

    async def close(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()


class BlobContainerStep(_AdapterStep):
    def __init__(self, tenant_id: str, binding: tenant_pb2.ObjectStoreBinding, secrets: SecretSource) -> None:
        super().__init__(tenant_id, secrets, binding.credentials_secret_ref)
        self._binding = binding

    @property
    def container(self) -> str:
        from services.storage.adapters.azure_blob.config import default_container

        return self._binding.bucket or default_container(self.tenant_id)

    @property
    def name(self) -> str:
        return f"azure.blob_container:{self.container}"

    async def _build(self) -> Any:
        from services.storage.adapters.azure_blob.backend import AzureBlobObjectStore
        from services.storage.adapters.azure_blob.config import config_from_binding
        from services.storage.adapters.azure_blob.factory import parse_secret

        secret = await self._secret()
        credentials = parse_secret(secret) if secret is not None else None
        return AzureBlobObjectStore(config_from_binding(self.tenant_id, self._binding, credentials))

    async def exists(self) -> bool:
        store = await self._open()
        return bool(await store.container.exists())


class CosmosDatabaseStep(_AdapterStep):
    def __init__(self, tenant_id: str, binding: tenant_pb2.ItemStoreBinding, secrets: SecretSource) -> None:
        super().__init__(tenant_id, secrets, binding.credentials_secret_ref)
        self._binding = binding
        self._config: Any = None

    @property
    def database(self) -> str:
        return self._binding.database or f"makoto-{self.tenant_id}"

    @property
    def name(self) -> str:
        return f"azure.cosmos_database:{self.database}"

    async def _build(self) -> Any:
        from services.storage.adapters.cosmos_items.config import CosmosItemConfig
        from services.storage.adapters.cosmos_items.store import CosmosItemStore

        self._config = CosmosItemConfig.from_binding(self.tenant_id, self._binding, await self._secret())
        return CosmosItemStore(self._config)

    async def exists(self) -> bool:
        return bool(await (await self._open()).database_exists())


class PlatformAzureSettings(BaseSettings):
    """The platform's own Key Vault for Azure tenants' secrets (MAKOTO_AZURE_TENANT_*). Without
    a vault URL there is no Key Vault step. Credentials and TLS trust are the azure-kv:// secret
    backend's (MAKOTO_AZURE_KV_ACCESS_TOKEN, MAKOTO_AZURE_KV_CA_BUNDLE, ...)."""

    model_config = SettingsConfigDict(env_prefix="MAKOTO_AZURE_TENANT_", extra="ignore")

    key_vault_url: str = ""
    secrets_prefix: str = "makoto-tenant"


class KeyVaultSecretsStep:
    """The tenant's secret names in the platform's Key Vault: `<prefix>-<tenant>--<name>`, each
    tagged `makoto:tenant=<tenant>`. apply() writes one tagged marker secret (`...--tenant`) so
    the names are reserved and offboarding has a start; undo() deletes and purges every secret
    carrying the tenant's tag (the tag, not the name prefix, decides: tenant `acme` must never
    take `acme-corp`'s secrets), so nothing is left in the soft-deleted state either."""

    def __init__(self, tenant_id: str, settings: PlatformAzureSettings) -> None:
        self.tenant_id = tenant_id
        self._vault_url = settings.key_vault_url.rstrip("/")
        self.prefix = f"{settings.secrets_prefix}-{tenant_id}--"
        self._client: Any = None

    @property
    def name(self) -> str:
        return f"azure.key_vault_secrets:{self.prefix}"

    @property
    def marker(self) -> str:
        return f"{self.prefix}tenant"

    async def _open(self) -> Any:
        if self._client is None:
            from azure.keyvault.secrets.aio import SecretClient

            from services.common.secrets.azure_kv_backend import AzureKeyVaultConfig, StaticTokenCredential

            cfg = AzureKeyVaultConfig()
            if cfg.access_token is None:
                raise StepFailed("no Key Vault credential configured (MAKOTO_AZURE_KV_ACCESS_TOKEN)")
            self._client = SecretClient(
                self._vault_url,
                StaticTokenCredential(cfg.access_token),
                verify_challenge_resource=cfg.verify_challenge_resource,
                connection_timeout=cfg.connect_timeout_seconds,
                read_timeout=cfg.read_timeout_seconds,
                connection_verify=cfg.ca_bundle or True,
                logging_enable=False,
            )
        return self._client

    async def owned(self) -> list[str]:
        """Names of the secrets carrying this tenant's tag."""
        client = await self._open()
        return [
            p.name
            async for p in client.list_properties_of_secrets()
            if (p.tags or {}).get("makoto:tenant") == self.tenant_id and p.name.startswith(self.prefix)
        ]

    async def exists(self) -> bool:
        return bool(await self.owned())

    async def apply(self) -> None:
        from services.tenant.provisioning.aws import tags

        client = await self._open()
        from azure.core.exceptions import ResourceNotFoundError

        try:
            await client.get_secret(self.marker)
        except ResourceNotFoundError:
            await client.set_secret(
                self.marker, self.tenant_id, tags=tags(self.tenant_id), content_type="text/plain"
            )

    async def undo(self) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        client = await self._open()
        for secret in await self.owned():
            try:
                await client.delete_secret(secret)  # the async client waits until it is deleted
            except ResourceNotFoundError:
                pass
            try:
                await client.purge_deleted_secret(secret)
            except ResourceNotFoundError:
                pass

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
