"""Provisioner for the embedded defaults: a directory per tenant under the data directory.

Layout (shared with StorageService): `<data_dir>/tenants/<tenant_id>/` with `objects/` for a LOCAL
object store and the SQLite item database `items.sqlite3` for a SQLITE item store (created empty;
StorageService owns its schema). Bindings to cloud resources the tenant brings need nothing here.

Removal never leaves the tenants directory: the path is rebuilt from a validated id, a symlink in
the tenant's place is unlinked rather than followed, and the tree is removed with the
symlink-attack-safe `shutil.rmtree`, which never follows links inside the tree.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
from pathlib import Path

from makoto.tenant.v1 import tenant_pb2

from services.tenant.model import TenantRecord
from services.tenant.ports import ProvisioningError

_TENANT_ID = re.compile(r"^[a-z][a-z0-9-]{2,62}$")


class LocalProvisioner:
    def __init__(self, data_dir: Path) -> None:
        self._tenants_dir = data_dir / "tenants"

    def tenant_root(self, tenant_id: str) -> Path:
        if not _TENANT_ID.fullmatch(tenant_id):
            raise ProvisioningError("invalid tenant id")
        return self._tenants_dir / tenant_id

    async def provision(self, tenant: TenantRecord) -> None:
        await asyncio.to_thread(self._provision, tenant)

    async def deprovision(self, tenant: TenantRecord) -> None:
        await asyncio.to_thread(self._deprovision, tenant.tenant_id)

    def _provision(self, tenant: TenantRecord) -> None:
        root = self.tenant_root(tenant.tenant_id)
        try:
            self._tenants_dir.mkdir(parents=True, exist_ok=True)
            if root.is_symlink():
                raise ProvisioningError("local provisioning failed: the tenant directory is a symbolic link")
            root.mkdir(mode=0o700, exist_ok=True)
            if tenant.bindings.object_store.backend == tenant_pb2.OBJECT_BACKEND_LOCAL:
                (root / "objects").mkdir(mode=0o700, exist_ok=True)
            if tenant.bindings.item_store.backend == tenant_pb2.ITEM_BACKEND_SQLITE:
                items = root / "items.sqlite3"
                if not items.exists():
                    sqlite3.connect(items).close()  # an empty database; StorageService adds its schema
                    os.chmod(items, 0o600)
        except OSError as exc:
            # The reason reaches the tenant (GetTenant): name the failure, not server paths.
            raise ProvisioningError(
                f"local provisioning failed: cannot create the tenant's directory ({exc.strerror or 'error'})"
            ) from exc
        except sqlite3.Error as exc:
            raise ProvisioningError("local provisioning failed: cannot create the item database") from exc

    def _deprovision(self, tenant_id: str) -> None:
        root = self.tenant_root(tenant_id)
        try:
            if root.is_symlink() or (root.exists() and not root.is_dir()):
                # The tenant's place holds a link or a file: remove that entry itself. A link is
                # never followed, its target is not ours to delete.
                root.unlink()
                return
            if not root.exists():
                return
            base = self._tenants_dir.resolve(strict=True)
            if root.resolve(strict=True).parent != base:
                raise ProvisioningError("local deprovisioning refused: directory outside the data directory")
            shutil.rmtree(root)
        except OSError as exc:
            raise ProvisioningError(
                f"local deprovisioning failed ({exc.strerror or 'error'}); retry DeleteTenant"
            ) from exc
