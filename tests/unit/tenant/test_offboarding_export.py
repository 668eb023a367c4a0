"""The offboarding export on a tenant's embedded stores (local objects, SQLite items), and the
signed download links, without a server."""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from services.common.config import MeshSettings
from services.common.errors import PermissionDenied
from services.storage.ports import ItemKey
from services.storage.registry import AdapterContext, default_registry
from services.tenant.bindings import default_bindings
from services.tenant.offboarding.export import TenantExporter, archive_path, read_summary
from services.tenant.offboarding.links import LinkSigner, local_key


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 1000):
        yield data[i : i + 1000]


async def test_an_export_holds_every_object_and_item_with_their_sha256(settings: MeshSettings) -> None:
    tid = "exp-local"
    bindings = default_bindings()
    registry = default_registry()
    ctx = AdapterContext(tenant_id=tid, settings=settings)
    objects = await registry.build_objects(ctx, bindings.object_store)
    items = await registry.build_items(ctx, bindings.item_store)
    data = {"a/b.txt": b"alpha", "z.bin": bytes(range(256)) * 40}
    try:
        for key, content in data.items():
            await objects.put(key, _chunks(content), content_type="text/plain", user_metadata={"k": "v"})
        for i in range(1200):  # more than one scan page
            await items.put(
                ItemKey("c1" if i % 2 else "c2", f"p{i % 7}", f"s{i:05d}"), {"i": i, "d": Decimal("1.50")}
            )
    finally:
        await objects.close()
        await items.close()

    exporter = TenantExporter(settings, None, settings.data_dir / "exports")  # type: ignore[arg-type]
    summary = await exporter.export(tid, bindings, "offboard-exp-local-1")
    path = archive_path(exporter.root, tid, "offboard-exp-local-1")
    body = path.read_bytes()
    assert summary.sha256 == hashlib.sha256(body).hexdigest() and summary.size_bytes == len(body)
    assert (summary.object_count, summary.item_count) == (2, 1200)
    assert read_summary(exporter.root, tid, "offboard-exp-local-1") == summary
    with tarfile.open(path, "r:gz") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for entry in manifest["objects"]:
            content = tar.extractfile(entry["path"]).read()  # type: ignore[union-attr]
            assert content == data[entry["key"]]
            assert entry["sha256"] == hashlib.sha256(content).hexdigest()
            assert entry["user_metadata"] == {"k": "v"}
        counts = {}
        for entry in manifest["items"]:
            raw = tar.extractfile(entry["path"]).read()  # type: ignore[union-attr]
            assert entry["sha256"] == hashlib.sha256(raw).hexdigest()
            lines = [json.loads(line) for line in raw.decode().splitlines()]
            assert all(line["collection"] == entry["collection"] for line in lines)
            assert len({(x["partition_key"], x["sort_key"]) for x in lines}) == len(lines) == entry["count"]
            counts[entry["collection"]] = entry["count"]
            assert lines[0]["attributes"]["m"]["d"] == {"d": "1.50"}
    assert counts == {"c1": 600, "c2": 600}

    await exporter.remove(tid)
    assert not (exporter.root / tid).exists()


def test_links_are_signed_expiring_and_bound_to_tenant_and_export(tmp_path: Path) -> None:
    key = local_key(tmp_path)
    assert local_key(tmp_path) == key and len(key) == 32  # created once, then reused
    signer = LinkSigner(key)
    token = signer.token("acme", "offboard-acme-1", 2_000_000_000)
    target = signer.verify(token, now=1_900_000_000)
    assert (target.tenant_id, target.export_id) == ("acme", "offboard-acme-1")

    payload, _, mac = token.partition(".")
    forged_payload = LinkSigner(b"k" * 32).token("other", "offboard-acme-1", 2_000_000_000).partition(".")[0]
    for bad in (
        f"{forged_payload}.{mac}",  # another tenant with this link's signature
        LinkSigner(b"k" * 32).token("acme", "offboard-acme-1", 2_000_000_000),  # another key
        f"{payload}.{mac[:-2]}xx",
        "garbage",
        "",
    ):
        with pytest.raises(PermissionDenied):
            signer.verify(bad, now=1_900_000_000)
    with pytest.raises(PermissionDenied):
        signer.verify(token, now=2_000_000_000)  # expired
