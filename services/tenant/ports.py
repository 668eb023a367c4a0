"""Ports of the tenant domain: the tenant store, the provisioner and the identity provider.

Adapters live in services/tenant/adapters/ (one module per backend) and raise the errors from
services.common.errors, so the servicer answers the same situation with the same code whatever
backend sits behind a port.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.tenant.model import State, TenantRecord, UserRecord, UserRole


class TenantStore(Protocol):
    """Tenants and the idempotency keys of CreateTenant."""

    async def insert(self, tenant: TenantRecord, request_id: str | None) -> None:
        """Store a new tenant (and remember request_id -> tenant_id in the same transaction).
        AlreadyExists if the tenant id (even a DELETED one) or the request id is taken."""
        ...

    async def tenant_for_request(self, request_id: str) -> str | None:
        """The tenant id a CreateTenant with this request id made, if any."""
        ...

    async def get(self, tenant_id: str) -> TenantRecord | None:
        """The tenant in any state, DELETED included; None if it never existed."""
        ...

    async def replace(self, tenant: TenantRecord, *, expected_etag: str) -> None:
        """Compare-and-swap write: Aborted unless the stored etag still equals expected_etag."""
        ...

    async def list(self, *, after: str | None, limit: int, include_deleted: bool) -> Sequence[TenantRecord]:
        """Tenants ordered by id, strictly after `after`."""
        ...

    async def in_states(self, states: Sequence[State]) -> Sequence[TenantRecord]:
        """Tenants in any of these states (start-up recovery of interrupted work)."""
        ...


class ProvisioningError(Exception):
    """Provisioning or deprovisioning failed. The message is safe to show the platform admin
    (no secrets, no paths outside the tenant's own resources)."""


class Provisioner(Protocol):
    """Creates and removes the resources a tenant's bindings need. Both calls are idempotent:
    they may run again after a crash or a retry."""

    async def provision(self, tenant: TenantRecord) -> None: ...

    async def deprovision(self, tenant: TenantRecord) -> None: ...


class IdentityProvider(Protocol):
    """A tenant's users (local dev store now; Cognito later)."""

    async def invite(self, tenant_id: str, email: str, role: UserRole) -> UserRecord:
        """AlreadyExists if this email is already a user of the tenant."""
        ...

    async def list_users(self, tenant_id: str, *, after: str | None, limit: int) -> Sequence[UserRecord]:
        """Users ordered by user_id, strictly after `after`."""
        ...

    async def remove(self, tenant_id: str, user_id: str) -> None:
        """NotFound if the tenant has no such user."""
        ...

    async def has_user(self, tenant_id: str, user_id: str) -> bool:
        """Whether user_id is a current (not removed or disabled) user of the tenant."""
        ...

    async def remove_all(self, tenant_id: str) -> int:
        """Offboarding: remove every user of the tenant; returns how many there were."""
        ...


class ChangeNotifier(Protocol):
    """Tells the data plane a tenant changed (after the change is committed). Best effort: it
    must not raise; data-plane caches also re-check on their own (TTL)."""

    async def changed(self, tenant: TenantRecord) -> None: ...
