"""Contract-suite factory for the S3 object store, on moto server (tests/contract/emulators.py).

Stores are built the way StorageService builds them: the registry factory
(services.storage.adapters.s3:build) with a binding and a credentials secret resolved through
an AdapterContext; each store is a fresh tenant with its own bucket, deprovisioned afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from makoto.tenant.v1 import tenant_pb2

from services.common.config import MeshSettings
from services.storage.adapters.s3 import S3ObjectStore, build
from services.storage.ports import ObjectStore
from services.storage.registry import AdapterContext
from tests.contract.backends import FaultRig, ObjectStoreFactory
from tests.contract.emulators import MOTO_CREDENTIALS, Emulator, StaticSecrets, moto_server
from tests.support import DEV_EGRESS_ALLOW

__all__ = ["moto_server", "s3_fault_rig", "s3_object_store_factory"]

_ids = itertools.count()


@pytest.fixture(scope="session")
async def s3_object_store_factory(
    moto_server: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ObjectStoreFactory]:
    settings = MeshSettings(
        home=Path(tmp_path_factory.mktemp("contract-s3")), egress_allow=list(DEV_EGRESS_ALLOW)
    )
    secrets = StaticSecrets({"local://s3-contract": json.dumps(MOTO_CREDENTIALS)})
    made: list[tuple[AdapterContext, tenant_pb2.ObjectStoreBinding]] = []

    async def make() -> ObjectStore:
        ctx = AdapterContext(tenant_id=f"ct{next(_ids):05d}-s3", settings=settings, secrets=secrets)
        binding = tenant_pb2.ObjectStoreBinding(
            backend=tenant_pb2.OBJECT_BACKEND_S3,
            endpoint=moto_server.endpoint,
            region="us-east-1",
            path_style=True,
            credentials_secret_ref="local://s3-contract",
            options={"auto_provision": "true", "max_attempts": "2"},
        )
        made.append((ctx, binding))
        return await build(ctx, binding)

    yield make

    async def clean(ctx: AdapterContext, binding: tenant_pb2.ObjectStoreBinding) -> None:
        store: S3ObjectStore = await build(ctx, binding)  # the suite closed the original
        try:
            await store.deprovision()
        finally:
            await store.close()

    await asyncio.gather(*(clean(ctx, binding) for ctx, binding in made))


def _s3_error(status: int, code: str, headers: dict[str, str] | None = None) -> web.Response:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>m</Message></Error>"
    return web.Response(status=status, body=body.encode(), headers=headers, content_type="application/xml")


@pytest.fixture(scope="session")
async def s3_fault_rig(
    moto_server: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FaultRig]:
    """moto checks no credentials: rejected ones are answered by the HTTP fault proxy (`rejected`)."""
    settings = MeshSettings(
        home=Path(tmp_path_factory.mktemp("faults-s3")), egress_allow=list(DEV_EGRESS_ALLOW)
    )
    wrong = {"access_key_id": "AKIAWRONGWRONGWRONG1", "secret_access_key": "wrong-secret-never-shown"}
    secrets = StaticSecrets(
        {"local://s3-faults": json.dumps(MOTO_CREDENTIALS), "local://s3-faults-wrong": json.dumps(wrong)}
    )
    made: list[S3ObjectStore] = []

    async def store_via(port: int, bad_credentials: bool) -> ObjectStore:
        ctx = AdapterContext(tenant_id=f"ft{next(_ids):05d}-s3", settings=settings, secrets=secrets)
        binding = tenant_pb2.ObjectStoreBinding(
            backend=tenant_pb2.OBJECT_BACKEND_S3,
            endpoint=f"http://127.0.0.1:{port}",
            region="us-east-1",
            path_style=True,
            credentials_secret_ref="local://s3-faults-wrong" if bad_credentials else "local://s3-faults",
            options={"max_attempts": "2", "part_size_bytes": str(5 * 1024 * 1024)},
        )
        store: S3ObjectStore = await build(ctx, binding)
        made.append(store)
        if not bad_credentials:
            await store.provision()
        return store

    yield FaultRig(
        upstream=moto_server.endpoint,
        store_via=store_via,
        throttled=lambda: _s3_error(503, "SlowDown", {"Retry-After": "1"}),
        rejected=lambda: _s3_error(403, "InvalidAccessKeyId"),
        secrets=(MOTO_CREDENTIALS["secret_access_key"], wrong["secret_access_key"], wrong["access_key_id"]),
    )
    for store in made:
        await store.close()
