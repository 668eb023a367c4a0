"""Helpers of tests/e2e/test_multi_cloud.py: the emulated clouds, the four tenants' bindings,
their credential secrets, and direct SDK views of each tenant's backend resources.

The emulators are the contract suites' own (tests/contract/emulators.py, item_emulators.py):
one moto server serves S3 (the AWS tenant's bucket and, as a MinIO stand-in, the custom
tenant's bucket) and DynamoDB; Azurite serves Blob; @vercel/cosmosdb-server serves Cosmos DB
(HTTPS, self-signed: the binding option connection_verify=false is for this emulator only);
a fresh database on the local PostgreSQL serves the custom tenant's items.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aioboto3
import asyncpg
from azure.cosmos.aio import CosmosClient
from azure.storage.blob.aio import BlobServiceClient

from services.common.config import MeshSettings
from services.common.secrets import LocalSecretStore
from services.storage.adapters.azure_blob.config import default_container
from services.storage.adapters.azure_blob.names import from_blob_name
from services.storage.adapters.postgres_items.config import quote_ident, schema_for
from services.storage.adapters.s3.config import default_bucket
from services.storage.item_codec import split_partition_value
from tests.contract import emulators, item_emulators

T = TypeVar("T")
ItemKey = tuple[str, str, str]  # collection, partition key, sort key


@dataclass
class Clouds:
    moto: emulators.Emulator
    azurite: emulators.Azurite
    cosmos: item_emulators.Emulator
    pg_dsn: str  # postgresql://postgres@127.0.0.1:5432/<fresh database>


async def _start(stack: contextlib.ExitStack, start: Callable[[], T], stop: Callable[[T], Any]) -> T:
    value = await asyncio.to_thread(start)
    stack.callback(stop, value)
    return value


def _enter_cosmos() -> tuple[
    contextlib.AbstractContextManager[item_emulators.Emulator], item_emulators.Emulator
]:
    manager = item_emulators.start_cosmos()
    return manager, manager.__enter__()


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh database on the PostgreSQL the item suites use (item_emulators.PG_ADMIN_DSN),
    dropped afterwards even while the mesh still holds connections to it."""
    admin = await asyncpg.connect(item_emulators.PG_ADMIN_DSN, timeout=5)
    name = f"makoto_e2e_clouds_{uuid.uuid4().hex[:10]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = item_emulators.PG_ADMIN_DSN.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(item_emulators.PG_ADMIN_DSN, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def running_clouds() -> AsyncIterator[Clouds]:
    """Every emulator started at once (each waits until it serves), all stopped at the end."""
    with contextlib.ExitStack() as stack:
        results = await asyncio.gather(
            _start(stack, emulators.start_moto, lambda e: e.stop()),
            _start(stack, emulators.start_azurite, lambda e: e.stop()),
            _start(stack, _enter_cosmos, lambda pair: pair[0].__exit__(None, None, None)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        moto, azurite, cosmos_started = results
        assert isinstance(moto, emulators.Emulator) and isinstance(azurite, emulators.Azurite)
        assert isinstance(cosmos_started, tuple)
        cosmos = cosmos_started[1]
        async with postgres_database() as dsn:
            yield Clouds(moto=moto, azurite=azurite, cosmos=cosmos, pg_dsn=dsn)


# -- the four tenants ------------------------------------------------------------------------


@dataclass
class TenantSpec:
    """One tenant of the test: its id, its bindings (REST JSON) and where its data lives."""

    name: str  # aws | azure | custom | local
    tenant_id: str
    cloud_provider: str
    bindings: dict[str, Any] = field(default_factory=dict)
    object_backend: str = "local"  # the storage_bytes "backend" dimension
    bucket: str = ""  # S3 bucket or Azure container
    item_location: str = ""  # DynamoDB table, Cosmos database or PostgreSQL schema

    def create_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "tenantId": self.tenant_id,
            "displayName": f"Tenant on {self.name}",
            "cloudProvider": self.cloud_provider,
        }
        if self.bindings:
            body["bindings"] = self.bindings
        return body


# Secret -> the tenant (spec name) it belongs to: a binding may only name its own tenant's
# secrets (local://tenants/<tenant_id>/<name>).
SECRET_OWNERS = {
    "aws-s3": "aws",
    "aws-dynamodb": "aws",
    "azure-blob": "azure",
    "azure-cosmos": "azure",
    "custom-s3": "custom",
    "custom-pg": "custom",
}


def secret_name(name: str, ids: dict[str, str]) -> str:
    return f"tenants/{ids[SECRET_OWNERS[name]]}/{name}"


def secret_values(clouds: Clouds) -> dict[str, str]:
    """Secret name -> value: each binding's credentials in the shape its factory reads."""
    return {
        "aws-s3": json.dumps(emulators.MOTO_CREDENTIALS),
        "aws-dynamodb": "makoto-ddb:makoto-ddb-secret",  # ACCESS_KEY_ID:SECRET_ACCESS_KEY
        "azure-blob": json.dumps({"account_name": clouds.azurite.account, "account_key": clouds.azurite.key}),
        "azure-cosmos": item_emulators.COSMOS_EMULATOR_KEY,
        "custom-s3": json.dumps({"access_key_id": "minio", "secret_access_key": "minio-secret-123"}),
        # Trust authentication ignores it, but the binding still resolves it like a real password.
        "custom-pg": "pg-password-not-checked-by-trust",
    }


def seed_secrets(settings: MeshSettings, clouds: Clouds, specs: dict[str, TenantSpec]) -> dict[str, str]:
    """The bindings' credentials as local:// secrets in the mesh's home (the services read the
    same encrypted file on every resolution). Returns the values seeded."""
    store = LocalSecretStore(settings)
    values = secret_values(clouds)
    ids = {spec.name: spec.tenant_id for spec in specs.values()}
    for name, value in values.items():
        store.set(secret_name(name, ids), value)
    return values


def tenant_specs(clouds: Clouds) -> dict[str, TenantSpec]:
    suffix = uuid.uuid4().hex[:8]
    ids = {name: f"mc-{name}-{suffix}" for name in ("aws", "azure", "custom", "local")}
    custom_bucket = f"minio-{ids['custom']}-files"
    ref = {k: f"local://{secret_name(k, ids)}" for k in SECRET_OWNERS}
    return {
        "aws": TenantSpec(
            "aws",
            ids["aws"],
            "CLOUD_PROVIDER_AWS",
            {
                "objectStore": {
                    "backend": "OBJECT_BACKEND_S3",
                    "endpoint": clouds.moto.endpoint,
                    "region": "us-east-1",
                    "pathStyle": True,
                    "credentialsSecretRef": ref["aws-s3"],
                    # 5 MiB parts: the multi-MiB gRPC upload goes through a multipart upload.
                    "options": {"auto_provision": "true", "part_size_bytes": str(5 * 1024 * 1024)},
                },
                "itemStore": {
                    "backend": "ITEM_BACKEND_DYNAMODB",
                    "endpoint": clouds.moto.endpoint,
                    "region": "us-east-1",
                    "credentialsSecretRef": ref["aws-dynamodb"],
                    "options": {"auto_provision": "true"},
                },
            },
            object_backend="s3",
            bucket=default_bucket(ids["aws"]),
            item_location=f"makoto-{ids['aws']}-items",
        ),
        "azure": TenantSpec(
            "azure",
            ids["azure"],
            "CLOUD_PROVIDER_AZURE",
            {
                "objectStore": {
                    "backend": "OBJECT_BACKEND_AZURE_BLOB",
                    "endpoint": clouds.azurite.account_url,
                    "credentialsSecretRef": ref["azure-blob"],
                    # 1 MiB blocks: the multi-MiB gRPC upload is staged in blocks.
                    "options": {"auto_provision": "true", "part_size_bytes": str(1024 * 1024)},
                },
                "itemStore": {
                    "backend": "ITEM_BACKEND_COSMOS",
                    "endpoint": clouds.cosmos.endpoint,
                    "credentialsSecretRef": ref["azure-cosmos"],
                    "options": {"auto_provision": "true", "connection_verify": "false"},
                },
            },
            object_backend="azure_blob",
            bucket=default_container(ids["azure"]),
            item_location=f"makoto-{ids['azure']}",
        ),
        "custom": TenantSpec(
            "custom",
            ids["custom"],
            "CLOUD_PROVIDER_CUSTOM",
            {
                "objectStore": {
                    "backend": "OBJECT_BACKEND_S3",
                    "endpoint": clouds.moto.endpoint,
                    "bucket": custom_bucket,
                    "credentialsSecretRef": ref["custom-s3"],
                    "options": {"preset": "minio", "auto_provision": "true"},
                },
                "itemStore": {
                    "backend": "ITEM_BACKEND_POSTGRES",
                    "endpoint": clouds.pg_dsn,
                    "credentialsSecretRef": ref["custom-pg"],
                    "options": {"auto_provision": "true"},
                },
            },
            object_backend="s3",
            bucket=custom_bucket,
            item_location=schema_for(ids["custom"]),
        ),
        "local": TenantSpec("local", ids["local"], "CLOUD_PROVIDER_LOCAL"),
    }


# -- direct views of the backends (the SDKs, not the service) ---------------------------------


async def s3_keys(clouds: Clouds, bucket: str) -> set[str]:
    session = aioboto3.Session()
    async with session.client(
        "s3",
        endpoint_url=clouds.moto.endpoint,
        region_name="us-east-1",
        aws_access_key_id="inspector",
        aws_secret_access_key="inspector",
    ) as s3:
        keys: set[str] = set()
        async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys.update(obj["Key"] for obj in page.get("Contents", []))
        return keys


async def s3_buckets(clouds: Clouds) -> set[str]:
    session = aioboto3.Session()
    async with session.client(
        "s3",
        endpoint_url=clouds.moto.endpoint,
        region_name="us-east-1",
        aws_access_key_id="inspector",
        aws_secret_access_key="inspector",
    ) as s3:
        return {b["Name"] for b in (await s3.list_buckets())["Buckets"]}


async def blob_names(clouds: Clouds, container: str) -> set[str]:
    async with BlobServiceClient.from_connection_string(clouds.azurite.connection_string) as service:
        names = service.get_container_client(container).list_blob_names()
        return {from_blob_name(name) async for name in names}


async def blob_containers(clouds: Clouds) -> set[str]:
    async with BlobServiceClient.from_connection_string(clouds.azurite.connection_string) as service:
        return {c["name"] async for c in service.list_containers()}


async def dynamodb_keys(clouds: Clouds, table: str) -> set[ItemKey]:
    session = aioboto3.Session()
    async with session.client(
        "dynamodb",
        endpoint_url=clouds.moto.endpoint,
        region_name="us-east-1",
        aws_access_key_id="inspector",
        aws_secret_access_key="inspector",
    ) as ddb:
        out: set[ItemKey] = set()
        async for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            for row in page["Items"]:
                collection, partition = split_partition_value(row["pk"]["S"])
                out.add((collection, partition, row["sk"]["S"]))
        return out


async def dynamodb_tables(clouds: Clouds) -> set[str]:
    session = aioboto3.Session()
    async with session.client(
        "dynamodb",
        endpoint_url=clouds.moto.endpoint,
        region_name="us-east-1",
        aws_access_key_id="inspector",
        aws_secret_access_key="inspector",
    ) as ddb:
        return set((await ddb.list_tables())["TableNames"])


async def cosmos_keys(clouds: Clouds, database: str) -> set[ItemKey]:
    async with CosmosClient(
        clouds.cosmos.endpoint, credential=item_emulators.COSMOS_EMULATOR_KEY, connection_verify=False
    ) as client:
        container = client.get_database_client(database).get_container_client("items")
        out: set[ItemKey] = set()
        async for doc in container.query_items("SELECT c.pk, c.s FROM c"):
            collection, partition = split_partition_value(doc["pk"])
            out.add((collection, partition, doc["s"]))
        return out


async def cosmos_databases(clouds: Clouds) -> set[str]:
    async with CosmosClient(
        clouds.cosmos.endpoint, credential=item_emulators.COSMOS_EMULATOR_KEY, connection_verify=False
    ) as client:
        return {db["id"] async for db in client.list_databases()}


async def postgres_keys(clouds: Clouds, schema: str) -> set[ItemKey]:
    conn = await asyncpg.connect(clouds.pg_dsn, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT collection, convert_from(partition_key, 'UTF8') AS p, "
            f"convert_from(sort_key, 'UTF8') AS s FROM {quote_ident(schema)}.items"
        )
        return {(r["collection"], r["p"], r["s"]) for r in rows}
    finally:
        await conn.close()


async def postgres_schemas(clouds: Clouds) -> set[str]:
    conn = await asyncpg.connect(clouds.pg_dsn, timeout=5)
    try:
        rows = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'makoto%'")
        return {r["nspname"] for r in rows}
    finally:
        await conn.close()


def _sqlite_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    # Read-only, so the test never creates a database the service did not.
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def local_object_keys(settings: MeshSettings, tenant_id: str) -> set[str]:
    index = settings.data_dir / "tenants" / tenant_id / "objects" / "index.sqlite3"
    return {bytes(k).decode() for (k,) in _sqlite_rows(index, "SELECT key FROM objects")}


def local_item_keys(settings: MeshSettings, tenant_id: str) -> set[ItemKey]:
    db = settings.data_dir / "tenants" / tenant_id / "items.sqlite3"
    rows = _sqlite_rows(db, "SELECT collection, partition_key, sort_key FROM items")
    return {(c, bytes(p).decode(), bytes(s).decode()) for c, p, s in rows}


def local_tenant_entries(settings: MeshSettings, tenant_id: str) -> set[str]:
    root = settings.data_dir / "tenants" / tenant_id
    return {p.name for p in root.iterdir()} if root.exists() else set()
