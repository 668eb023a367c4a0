"""The registry builds Azure Blob stores from a binding + a resolved secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.common.config import MeshSettings
from services.common.errors import FailedPrecondition
from services.storage.adapters.azure_blob import AzureBlobObjectStore, parse_secret
from services.storage.registry import AdapterContext, default_registry
from tests.contract.emulators import Azurite, StaticSecrets
from tests.support import DEV_EGRESS_ALLOW
from tests.unit.storage_s3.helpers import chunked, collect


def test_secret_shapes() -> None:
    conn = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5"
    assert parse_secret(conn) == {"connection_string": conn}
    assert parse_secret("?sv=2024-01-01&sp=r&sig=abc") == {"sas_token": "?sv=2024-01-01&sp=r&sig=abc"}
    assert parse_secret("a2V5") == {"account_key": "a2V5"}
    assert parse_secret('{"account_name": "acct", "account_key": "a2V5"}') == {
        "account_name": "acct",
        "account_key": "a2V5",
    }
    with pytest.raises(FailedPrecondition) as err:
        parse_secret('{"password": "hunter2"}')
    assert "hunter2" not in err.value.message


async def test_registry_builds_a_blob_store(azurite: Azurite, tmp_path: Path) -> None:
    ctx = AdapterContext(
        tenant_id="reg-blob",
        settings=MeshSettings(home=tmp_path, egress_allow=list(DEV_EGRESS_ALLOW)),
        secrets=StaticSecrets({"local://blob": azurite.key}),
    )
    binding = tenant_pb2.ObjectStoreBinding(
        backend=tenant_pb2.OBJECT_BACKEND_AZURE_BLOB,
        endpoint=azurite.account_url,
        credentials_secret_ref="local://blob",
        options={"auto_provision": "true"},
    )
    store = await default_registry().build_objects(ctx, binding)
    try:
        assert isinstance(store, AzureBlobObjectStore) and store.cfg.container == "reg-blob-assets"
        await store.put("k", chunked(b"via registry"), content_type="text/plain", user_metadata={})
        _, stream = await store.get("k")
        assert await collect(stream) == b"via registry"
        await store.deprovision()
    finally:
        await store.close()
