"""Contract-suite factory for the Azure Blob object store, on Azurite (tests/contract/emulators.py).

Stores are built the way StorageService builds them: the registry factory
(services.storage.adapters.azure_blob:build) with a binding and a connection-string secret
resolved through an AdapterContext; each store is a fresh tenant with its own container,
deprovisioned afterwards. Blocks are 1 MiB so the suite's multi-MiB uploads (and its failed and
cancelled uploads) go through staged blocks.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from makoto.tenant.v1 import tenant_pb2

from services.common.config import MeshSettings
from services.storage.adapters.azure_blob import AzureBlobObjectStore, build
from services.storage.ports import ObjectStore
from services.storage.registry import AdapterContext
from tests.contract.backends import FaultRig, ObjectStoreFactory
from tests.contract.emulators import Azurite, StaticSecrets, azurite
from tests.support import DEV_EGRESS_ALLOW

__all__ = ["azure_blob_fault_rig", "azure_blob_object_store_factory", "azurite"]

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


def _blob_error(status: int, code: str, headers: dict[str, str] | None = None) -> web.Response:
    body = f"<?xml version='1.0' encoding='utf-8'?><Error><Code>{code}</Code><Message>m</Message></Error>"
    return web.Response(
        status=status,
        body=body.encode(),
        content_type="application/xml",
        headers={"x-ms-error-code": code, **(headers or {})},
    )


@pytest.fixture(scope="session")
async def azure_blob_fault_rig(
    azurite: Azurite, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FaultRig]:
    """Azurite verifies Shared Key signatures: rejected credentials are a real wrong key."""
    settings = MeshSettings(
        home=Path(tmp_path_factory.mktemp("faults-azure-blob")), egress_allow=list(DEV_EGRESS_ALLOW)
    )
    wrong = base64.b64encode(b"not the account key, but 64 bytes long......................!!").decode()
    secrets = StaticSecrets({"local://blob-faults": azurite.key, "local://blob-faults-wrong": wrong})
    made: list[AzureBlobObjectStore] = []

    async def store_via(port: int, bad_credentials: bool) -> ObjectStore:
        ctx = AdapterContext(tenant_id=f"ft{next(_ids):05d}-blob", settings=settings, secrets=secrets)
        binding = tenant_pb2.ObjectStoreBinding(
            backend=tenant_pb2.OBJECT_BACKEND_AZURE_BLOB,
            endpoint=f"http://127.0.0.1:{port}/{azurite.account}",
            credentials_secret_ref="local://blob-faults-wrong" if bad_credentials else "local://blob-faults",
            options={"max_attempts": "2", "part_size_bytes": str(1024 * 1024)},
        )
        store: AzureBlobObjectStore = await build(ctx, binding)
        made.append(store)
        if not bad_credentials:
            await store.provision()
        return store

    yield FaultRig(
        upstream=azurite.endpoint,
        store_via=store_via,
        throttled=lambda: _blob_error(503, "ServerBusy", {"Retry-After": "1"}),
        rejected=None,
        secrets=(azurite.key, wrong),
    )
    for store in made:
        await store.close()
