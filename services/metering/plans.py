"""PlanResolver adapters: which price plan a tenant is billed on."""

from __future__ import annotations

from collections.abc import Mapping

from services.common.directory_client import TenantDirectory
from services.common.errors import NotFound
from services.metering.pricing import DEFAULT_PLAN_ID


class FixedPlanResolver:
    """A fixed table (tests, single-plan deployments): unknown tenants get the default plan."""

    def __init__(self, by_tenant: Mapping[str, str] | None = None, default: str = DEFAULT_PLAN_ID) -> None:
        self._by_tenant = dict(by_tenant or {})
        self._default = default

    def assign(self, tenant_id: str, plan_id: str) -> None:
        self._by_tenant[tenant_id] = plan_id

    async def plan_id_for(self, tenant_id: str) -> str:
        return self._by_tenant.get(tenant_id, self._default)


class DirectoryPlanResolver:
    """The tenant's price_plan_id from TenantService's directory ("" means the default plan).
    A tenant the directory does not know is billed on the default plan (its usage may predate
    or outlive its record); an unreachable directory fails the call rather than misprice it."""

    def __init__(self, directory: TenantDirectory, default: str = DEFAULT_PLAN_ID) -> None:
        self._directory = directory
        self._default = default

    async def plan_id_for(self, tenant_id: str) -> str:
        try:
            answer = await self._directory.resolve(tenant_id)
        except NotFound:
            return self._default
        return answer.price_plan_id or self._default
