"""S3 stores on moto server (tests/contract/emulators.py), for the S3-only tests and the cloud
object suites (tests/unit/storage_cloud_objects/)."""

from __future__ import annotations

from makoto.tenant.v1 import tenant_pb2

from services.storage.adapters.s3 import S3ObjectStore, config_from_binding
from tests.contract.emulators import MOTO_CREDENTIALS


def s3_binding(endpoint: str, **options: str) -> tenant_pb2.ObjectStoreBinding:
    return tenant_pb2.ObjectStoreBinding(
        backend=tenant_pb2.OBJECT_BACKEND_S3,
        endpoint=endpoint,
        region="us-east-1",
        path_style=True,
        options={"max_attempts": "2", **options},
    )


def s3_store(tenant: str, endpoint: str, **options: str) -> S3ObjectStore:
    return S3ObjectStore(config_from_binding(tenant, s3_binding(endpoint, **options), MOTO_CREDENTIALS))
