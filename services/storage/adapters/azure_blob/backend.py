"""AzureBlobObjectStore: the ObjectStore port on Azure Blob Storage (and Azurite).

One async BlobServiceClient per tenant adapter, closed by close(). The SDK's retries are off;
errors.call() applies the mesh's retry policy and error mapping to every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.storage.blob import BlobSasPermissions, generate_blob_sas
from azure.storage.blob.aio import BlobServiceClient

from services.common.errors import FailedPrecondition
from services.storage.adapters.azure_blob import lister, reader
from services.storage.adapters.azure_blob.config import BlobConfig
from services.storage.adapters.azure_blob.errors import ErrorContext, RetryPolicy, call, error_code
from services.storage.adapters.azure_blob.names import to_blob_name
from services.storage.adapters.azure_blob.writer import BlobWriter
from services.storage.adapters.object_backend import CloudObjectStore, check_sign_ttl, unless_code
from services.storage.ports import ObjectCapabilities, ObjectInfo, ObjectPage, SignedUrl, SignMethod

CLOCK_SKEW = timedelta(minutes=5)  # SAS start time set back so a slightly late clock still accepts it


class AzureBlobObjectStore(CloudObjectStore):
    def __init__(self, cfg: BlobConfig, *, retry: RetryPolicy | None = None) -> None:
        self.cfg = cfg
        self._policy = retry or RetryPolicy(max_attempts=cfg.max_attempts)
        credential: Any
        if cfg.account_key is not None:
            credential = AzureNamedKeyCredential(cfg.account_name, cfg.account_key)
        else:
            credential = AzureSasCredential(cfg.sas_token or "")
        self.service = BlobServiceClient(
            cfg.account_url,
            credential=credential,
            retry_total=0,  # errors.call() retries
            max_single_put_size=cfg.part_size,
            max_block_size=cfg.part_size,
            max_single_get_size=cfg.download_chunk,
            max_chunk_get_size=cfg.download_chunk,
            connection_timeout=cfg.connect_timeout,
            read_timeout=cfg.read_timeout,
        )
        self.container = self.service.get_container_client(cfg.container)
        self._writer = BlobWriter(self.container, cfg, self._policy)

    @property
    def capabilities(self) -> ObjectCapabilities:
        return ObjectCapabilities(sign_url=self.cfg.can_sign, if_none_match=True, ranged_read=True)

    def _blob(self, key: str) -> Any:
        return self.container.get_blob_client(to_blob_name(key))

    @property
    def label(self) -> str:
        return self.cfg.label

    async def writer(self, create_only: bool) -> BlobWriter:
        return self._writer

    async def get(
        self, key: str, *, start: int = 0, length: int | None = None
    ) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        return await reader.read_blob(self._blob(key), self.cfg, self._policy, key, start, length)

    async def head(self, key: str) -> ObjectInfo:
        return await reader.head_blob(self._blob(key), self.cfg, self._policy, key)

    async def delete_if_match(self, key: str, etag: str) -> None:
        blob = self._blob(key)
        await call(
            lambda: blob.delete_blob(etag=f'"{etag}"', match_condition=MatchConditions.IfNotModified),
            ErrorContext(self.cfg.label, key),
            self._policy,
        )

    async def list(self, prefix: str, page_size: int, page_token: str) -> ObjectPage:
        return await lister.list_blobs(self.container, self.cfg, self._policy, prefix, page_size, page_token)

    async def sign_url(self, key: str, method: SignMethod, ttl: timedelta) -> SignedUrl:
        """A service SAS for this one blob. A PUT through it must send `x-ms-blob-type: BlockBlob`."""
        if not self.cfg.can_sign:
            raise FailedPrecondition(
                f"{self.cfg.label}: capability sign_url needs the account key; "
                "this binding has only a SAS token",
                reason="CAPABILITY_MISSING",
                metadata={"capability": "sign_url"},
            )
        check_sign_ttl(ttl)
        now = datetime.now(UTC)
        expires = now + ttl
        permission = (
            BlobSasPermissions(read=True) if method == "GET" else BlobSasPermissions(create=True, write=True)
        )
        sas = generate_blob_sas(
            account_name=self.cfg.account_name,
            container_name=self.cfg.container,
            blob_name=to_blob_name(key),
            account_key=self.cfg.account_key,
            permission=permission,
            start=now - CLOCK_SKEW,
            expiry=expires,
        )
        return SignedUrl(url=f"{self._blob(key).url}?{sas}", expires=expires)

    async def provision(self) -> None:
        """Create the container; an existing one is fine (idempotent)."""
        create = self.container.create_container
        await unless_code(
            lambda: call(create, ErrorContext(self.cfg.label), self._policy),
            error_code,
            "ContainerAlreadyExists",
        )

    async def deprovision(self) -> None:
        """Delete the container with everything in it; a missing container is fine (idempotent).
        Azure removes a deleted container in the background: provisioning the same name again
        right away answers UNAVAILABLE (ContainerBeingDeleted) with a retry hint."""
        remove = self.container.delete_container
        await unless_code(
            lambda: call(remove, ErrorContext(self.cfg.label), self._policy), error_code, "ContainerNotFound"
        )

    async def close(self) -> None:
        await self.service.close()
