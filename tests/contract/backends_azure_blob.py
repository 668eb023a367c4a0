"""Contract-suite factory for the Azure Blob object store, on Azurite (tests/contract/emulators.py).

Stores are built the way StorageService builds them: the registry factory
(services.storage.adapters.azure_blob:build) with a binding and a connection-string secret
resolved through an AdapterContext; each store is a fresh tenant with its own container,
deprovisioned afterwards. Blocks are 1 MiB so the suite's multi-MiB uploads (and its failed and
cancelled uploads) go through staged blocks.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.common.config import MeshSettings
from services.storage.adapters.azure_blob import AzureBlobObjectStore, build
from services.storage.ports import ObjectStore
from services.storage.registry import AdapterContext
from tests.contract.backends import ObjectStoreFactory
from tests.contract.emulators import Azurite, StaticSecrets, azurite
from tests.support import DEV_EGRESS_ALLOW

__all__ = ["azure_blob_object_store_factory", "azurite"]

_ids = itertools.count()


@pytest.fixture(scope="session")
async def azure_blob_object_store_factory(
    azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ObjectStoreFactory]:
    settings = MeshSettings(
        home=Path(tmp_path_factory.mktemp("contract-azure-blob")), egress_allow=list(DEV_EGRESS_ALLOW)
    )
    secrets = StaticSecrets({"local://blob-contract": azurite.connection_string})
    made: list[tuple[AdapterContext, tenant_pb2.ObjectStoreBinding]] = []

    async def make() -> ObjectStore:
        ctx = AdapterContext(tenant_id=f"ct{next(_ids):05d}-blob", settings=settings, secrets=secrets)
        binding = tenant_pb2.ObjectStoreBinding(
            backend=tenant_pb2.OBJECT_BACKEND_AZURE_BLOB,
            endpoint=azurite.account_url,
            credentials_secret_ref="local://blob-contract",
            options={"auto_provision": "true", "max_attempts": "2", "part_size_bytes": str(1024 * 1024)},
        )
        made.append((ctx, binding))
        return await build(ctx, binding)

    yield make

    async def clean(ctx: AdapterContext, binding: tenant_pb2.ObjectStoreBinding) -> None:
        store: AzureBlobObjectStore = await build(ctx, binding)  # the suite closed the original
        try:
            await store.deprovision()
        finally:
            await store.close()

    await asyncio.gather(*(clean(ctx, binding) for ctx, binding in made))
