"""The registry builds S3 stores from a binding + a resolved secret (services.storage.registry)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.common.config import MeshSettings
from services.common.errors import FailedPrecondition
from services.storage.adapters.s3 import S3ObjectStore, parse_secret
from services.storage.registry import AdapterContext, default_registry
from tests.contract.emulators import MOTO_CREDENTIALS, Emulator, StaticSecrets
from tests.support import DEV_EGRESS_ALLOW
from tests.unit.storage_s3.helpers import chunked, collect


def test_secret_shapes() -> None:
    assert parse_secret('{"access_key_id": "A", "secret_access_key": "S", "session_token": "T"}') == {
        "access_key_id": "A",
        "secret_access_key": "S",
        "session_token": "T",
    }
    assert parse_secret("A:S/with:colon") == {"access_key_id": "A", "secret_access_key": "S/with:colon"}
    with pytest.raises(FailedPrecondition) as err:
        parse_secret("just-a-secret-value")
    assert "just-a-secret-value" not in err.value.message


async def test_registry_builds_an_s3_store(moto_server: Emulator, tmp_path: Path) -> None:
    ctx = AdapterContext(
        tenant_id="reg-s3",
        settings=MeshSettings(home=tmp_path, egress_allow=list(DEV_EGRESS_ALLOW)),
        secrets=StaticSecrets({"env://S3_KEYS": json.dumps(MOTO_CREDENTIALS)}),
    )
    binding = tenant_pb2.ObjectStoreBinding(
        backend=tenant_pb2.OBJECT_BACKEND_S3,
        endpoint=moto_server.endpoint,
        path_style=True,
        credentials_secret_ref="env://S3_KEYS",
        options={"auto_provision": "true"},
    )
    store = await default_registry().build_objects(ctx, binding)
    try:
        assert isinstance(store, S3ObjectStore) and store.cfg.bucket == "makoto-reg-s3-assets"
        await store.put("k", chunked(b"via registry"), content_type="text/plain", user_metadata={})
        _, stream = await store.get("k")
        assert await collect(stream) == b"via registry"
        await store.deprovision()
    finally:
        await store.close()
