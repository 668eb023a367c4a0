"""Azure provisioning steps: the tenant's Blob container and its Cosmos DB database + container.

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

from services.tenant.provisioning.aws import SecretSource


class BlobContainerStep:
    def __init__(self, tenant_id: str, binding: tenant_pb2.ObjectStoreBinding, secrets: SecretSource) -> None:
        self.tenant_id = tenant_id
        self._binding = binding
        self._secrets = secrets
        self._store: Any = None

    @property
    def container(self) -> str:
        from services.storage.adapters.azure_blob.config import default_container

        return self._binding.bucket or default_container(self.tenant_id)

    @property
    def name(self) -> str:
        return f"azure.blob_container:{self.container}"

    async def _open(self) -> Any:
        if self._store is None:
            from services.storage.adapters.azure_blob.backend import AzureBlobObjectStore
            from services.storage.adapters.azure_blob.config import config_from_binding
            from services.storage.adapters.azure_blob.factory import parse_secret

            credentials = None
            if self._binding.credentials_secret_ref:
                secret = await self._secrets.get(self._binding.credentials_secret_ref)
                credentials = parse_secret(secret.get_secret_value())
            self._store = AzureBlobObjectStore(
                config_from_binding(self.tenant_id, self._binding, credentials)
            )
        return self._store

    async def exists(self) -> bool:
        store = await self._open()
        return bool(await store.container.exists())

    async def apply(self) -> None:
        await (await self._open()).provision()

    async def undo(self) -> None:
        await (await self._open()).deprovision()

    async def close(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()


class CosmosDatabaseStep:
    def __init__(self, tenant_id: str, binding: tenant_pb2.ItemStoreBinding, secrets: SecretSource) -> None:
        self.tenant_id = tenant_id
        self._binding = binding
        self._secrets = secrets
        self._store: Any = None
        self._config: Any = None

    @property
    def database(self) -> str:
        return self._binding.database or f"makoto-{self.tenant_id}"

    @property
    def name(self) -> str:
        return f"azure.cosmos_database:{self.database}"

    async def _open(self) -> Any:
        if self._store is None:
            from services.storage.adapters.cosmos_items.config import CosmosItemConfig
            from services.storage.adapters.cosmos_items.store import CosmosItemStore

            secret = None
            if self._binding.credentials_secret_ref:
                secret = (await self._secrets.get(self._binding.credentials_secret_ref)).get_secret_value()
            self._config = CosmosItemConfig.from_binding(self.tenant_id, self._binding, secret)
            self._store = CosmosItemStore(self._config)
        return self._store

    async def exists(self) -> bool:
        return bool(await (await self._open()).database_exists())

    async def apply(self) -> None:
        await (await self._open()).provision()

    async def undo(self) -> None:
        await (await self._open()).deprovision()

    async def close(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()
