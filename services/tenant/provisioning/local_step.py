"""The embedded default as one workflow step: the tenant's directory under the data directory."""

from __future__ import annotations

from services.tenant.adapters.local_provisioner import LocalProvisioner
from services.tenant.model import TenantRecord


class LocalDirectoryStep:
    # The tenant directory is the platform's whatever the journal says (tenants from before it).
    always_owned = True
    # Re-run on every provisioning: new bindings (back to the LOCAL store) need new directories.
    always_apply = True

    def __init__(self, local: LocalProvisioner, tenant: TenantRecord) -> None:
        self._local = local
        self._tenant = tenant

    @property
    def name(self) -> str:
        return "local.tenant_directory"

    async def exists(self) -> bool:
        return False  # never brought by a tenant: always removed at offboarding

    async def apply(self) -> None:
        await self._local.provision(self._tenant)

    async def undo(self) -> None:
        await self._local.deprovision(self._tenant)

    async def close(self) -> None:
        return None
