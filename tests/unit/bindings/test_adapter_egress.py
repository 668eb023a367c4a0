"""The adapters check endpoints again when they build a client (DNS may answer differently
than at bind time): a stored binding pointing inside answers FAILED_PRECONDITION and is never
contacted, including an endpoint that only the resolved secret names (Azure connection string)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from makoto.tenant.v1 import tenant_pb2
from pydantic import SecretStr

from services.common.errors import FailedPrecondition
from services.storage.registry import AdapterContext, default_registry
from tests.support import make_settings
from tests.unit.bindings.trap import Trap, listening

B = tenant_pb2


class Secrets:
    """A secret source (the port AdapterContext reads) holding fixed values."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    async def get(self, ref: str) -> SecretStr:
        return SecretStr(self.values[ref])


@pytest.fixture
async def trap() -> AsyncIterator[Trap]:
    async with listening() as t:
        yield t


def ctx(tmp_path: Path, allow: list[str], secrets: dict[str, str] | None = None) -> AdapterContext:
    settings = make_settings(tmp_path / "home", egress_allow=allow)
    return AdapterContext("acme", settings, Secrets(secrets or {}))


async def test_object_endpoints_inside_are_refused_at_build(tmp_path: Path, trap: Trap) -> None:
    registry = default_registry()
    c = ctx(
        tmp_path,
        [],
        {
            "local://tenants/acme/s3": '{"access_key_id": "a", "secret_access_key": "b"}',
            "local://tenants/acme/blob": (
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                f"BlobEndpoint=http://127.0.0.1:{trap.port}/devstoreaccount1;"
            ),
        },
    )
    s3 = B.ObjectStoreBinding(
        backend=B.OBJECT_BACKEND_S3,
        endpoint=f"http://localhost:{trap.port}",
        credentials_secret_ref="local://tenants/acme/s3",
        options={"auto_provision": "true"},  # would contact the endpoint at once if built
    )
    # The Blob endpoint comes from the secret's connection string only.
    blob = B.ObjectStoreBinding(
        backend=B.OBJECT_BACKEND_AZURE_BLOB,
        credentials_secret_ref="local://tenants/acme/blob",
        options={"auto_provision": "true"},
    )
    for binding in (s3, blob):
        with pytest.raises(FailedPrecondition) as caught:
            await registry.build_objects(c, binding)
        assert caught.value.reason == "BINDING_EGRESS_REFUSED"
        assert caught.value.metadata == {"binding": "object_store"}
        assert "a2V5" not in caught.value.message
    assert trap.connections == []


async def test_item_endpoints_inside_are_refused_at_build(tmp_path: Path, trap: Trap) -> None:
    registry = default_registry()
    c = ctx(tmp_path, [])
    for binding in (
        B.ItemStoreBinding(
            backend=B.ITEM_BACKEND_DYNAMODB,
            endpoint=f"http://[::1]:{trap.port}",
            options={"auto_provision": "true"},
        ),
        B.ItemStoreBinding(
            backend=B.ITEM_BACKEND_POSTGRES,
            endpoint=f"postgresql://app@localhost:{trap.port}/db",
            options={"auto_provision": "true"},
        ),
    ):
        with pytest.raises(FailedPrecondition) as caught:
            await registry.build_items(c, binding)
        assert caught.value.reason == "BINDING_EGRESS_REFUSED"
    assert trap.connections == []


async def test_the_allow_list_lets_the_emulator_through(tmp_path: Path, trap: Trap) -> None:
    registry = default_registry()
    c = ctx(tmp_path, [f"127.0.0.1:{trap.port}"])
    binding = B.ObjectStoreBinding(backend=B.OBJECT_BACKEND_S3, endpoint=f"http://127.0.0.1:{trap.port}")
    store = await registry.build_objects(c, binding)  # built (it connects lazily)
    await store.close()
    other = B.ObjectStoreBinding(backend=B.OBJECT_BACKEND_S3, endpoint=f"http://127.0.0.1:{trap.port + 1}")
    with pytest.raises(FailedPrecondition, match="loopback"):
        await registry.build_objects(c, other)
