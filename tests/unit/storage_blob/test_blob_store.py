"""What only the Azure Blob adapter's tests show: Azurite enforces SAS (a read SAS cannot write, a
tampered signature is refused), a SAS-only credential reads and writes but cannot sign, a
connection string is a full credential. Reads, listing, delete, signing, lifecycle, failures and
the registry are one suite over every cloud object backend (tests/unit/storage_cloud_objects/)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.common.errors import FailedPrecondition
from services.storage.adapters.azure_blob import AzureBlobObjectStore
from services.storage.ports import ObjectInfo
from tests.contract.emulators import Azurite
from tests.unit.storage_blob.conftest import MakeStore, blob_store
from tests.unit.storage_s3.helpers import chunked

KIB = 1024


async def put_bytes(store: AzureBlobObjectStore, key: str, data: bytes) -> ObjectInfo:
    return await store.put(key, chunked(data, 64 * KIB), content_type="application/x-test", user_metadata={})


async def test_a_read_sas_cannot_write_and_a_tampered_one_is_refused(make_store: MakeStore) -> None:
    store = await make_store()
    await put_bytes(store, "s/file name.bin", b"signed bytes")
    signed = await store.sign_url("s/file name.bin", "GET", timedelta(minutes=5))
    async with httpx.AsyncClient() as http:
        assert (await http.get(signed.url)).status_code == 200
        assert (
            await http.put(signed.url, content=b"x", headers={"x-ms-blob-type": "BlockBlob"})
        ).status_code == 403
        assert (await http.get(signed.url.replace("sig=", "sig=AA"))).status_code == 403
    _, stream = await store.get("s/file name.bin")
    assert b"".join([c async for c in stream]) == b"signed bytes"


async def test_sas_only_credential_cannot_sign(make_store: MakeStore, azurite: Azurite) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    owner = await make_store()
    sas = generate_container_sas(
        azurite.account,
        owner.cfg.container,
        account_key=azurite.key,
        permission=ContainerSasPermissions(read=True, write=True, create=True, list=True, delete=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    store = blob_store(owner.cfg.tenant_id, azurite, {"sas_token": sas})
    try:
        assert not store.capabilities.sign_url
        await put_bytes(store, "via-sas", b"written with a SAS")  # the SAS still reads and writes
        assert (await store.head("via-sas")).size == len(b"written with a SAS")
        with pytest.raises(FailedPrecondition) as err:
            await store.sign_url("via-sas", "GET", timedelta(minutes=1))
        assert err.value.metadata["capability"] == "sign_url" and "sign_url" in err.value.message
        assert sas not in err.value.message
    finally:
        await store.close()


async def test_connection_string_credential(make_store: MakeStore, azurite: Azurite) -> None:
    store = await make_store(credentials={"connection_string": azurite.connection_string})
    assert store.capabilities.sign_url and store.cfg.account_name == azurite.account
    await put_bytes(store, "cs", b"ok")
    assert (await store.head("cs")).size == 2
