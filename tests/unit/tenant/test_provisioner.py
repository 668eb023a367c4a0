"""The local provisioner on the real filesystem: what it creates, and that removal stays inside
the tenant's own directory whatever links were planted there."""

from __future__ import annotations

from pathlib import Path

import pytest
from makoto.tenant.v1 import tenant_pb2

from services.tenant.adapters.local_provisioner import LocalProvisioner
from services.tenant.bindings import default_bindings
from services.tenant.model import TenantRecord
from services.tenant.ports import ProvisioningError
from tests.unit.tenant.conftest import TenantClient


def _tenant(tenant_id: str) -> TenantRecord:
    return TenantRecord(tenant_id=tenant_id, bindings=default_bindings())


async def test_deprovision_removes_the_tenant_directory(client: TenantClient) -> None:
    await client.create("offboard")
    await client.create("neighbour")
    tenants_dir = client.settings.data_dir / "tenants"
    root = tenants_dir / "offboard"
    (root / "objects" / "deep" / "er").mkdir(parents=True)
    (root / "objects" / "deep" / "er" / "file.bin").write_bytes(b"x" * 1000)
    (root / "items.sqlite3").write_bytes(b"data")

    await client.tenants.DeleteTenant(
        tenant_pb2.DeleteTenantRequest(tenant_id="offboard"), metadata=client.admin
    )
    assert not root.exists()
    assert (tenants_dir / "neighbour" / "objects").is_dir()  # nobody else's data is touched


async def test_links_inside_the_tree_are_not_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    prov = LocalProvisioner(data)
    await prov.provision(_tenant("linked"))
    root = data / "tenants" / "linked"
    (root / "objects" / "escape").symlink_to(outside, target_is_directory=True)
    (root / "objects" / "file-link").symlink_to(outside / "keep.txt")

    await prov.deprovision(_tenant("linked"))
    assert not root.exists()
    assert (outside / "keep.txt").read_text() == "keep"


async def test_a_link_in_the_tenants_place_is_unlinked_not_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (data / "tenants").mkdir(parents=True)
    (data / "tenants" / "planted").symlink_to(outside, target_is_directory=True)
    prov = LocalProvisioner(data)

    with pytest.raises(ProvisioningError):
        await prov.provision(_tenant("planted"))  # never provisions into a link's target
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]

    await prov.deprovision(_tenant("planted"))
    assert not (data / "tenants" / "planted").exists()
    assert (outside / "keep.txt").read_text() == "keep"


async def test_provision_is_idempotent_and_follows_bindings(tmp_path: Path) -> None:
    prov = LocalProvisioner(tmp_path)
    tenant = _tenant("twice")
    await prov.provision(tenant)
    items = tmp_path / "tenants" / "twice" / "items.sqlite3"
    items.write_bytes(b"")  # pretend StorageService wrote its schema: a rerun must not reset it
    (tmp_path / "tenants" / "twice" / "objects" / "kept").write_text("k")
    await prov.provision(tenant)
    assert (tmp_path / "tenants" / "twice" / "objects" / "kept").read_text() == "k"

    cloud = tenant_pb2.TenantBindings(
        object_store=tenant_pb2.ObjectStoreBinding(backend=tenant_pb2.OBJECT_BACKEND_S3, region="us-east-1"),
        item_store=tenant_pb2.ItemStoreBinding(backend=tenant_pb2.ITEM_BACKEND_DYNAMODB, region="us-east-1"),
    )
    await prov.provision(TenantRecord(tenant_id="cloud", bindings=cloud))
    assert list((tmp_path / "tenants" / "cloud").iterdir()) == []


async def test_ids_that_could_escape_are_refused(tmp_path: Path) -> None:
    prov = LocalProvisioner(tmp_path / "data")
    for bad in ("..", "../x", "a/b", "", "UP"):
        with pytest.raises(ProvisioningError):
            await prov.deprovision(_tenant(bad))
        with pytest.raises(ProvisioningError):
            await prov.provision(_tenant(bad))
    assert not (tmp_path / "data" / "tenants").exists() or not any((tmp_path / "data" / "tenants").iterdir())
