"""Tenant lifecycle use cases: create (provision), read, list, update, suspend, resume, offboard.

Every write is a compare-and-swap on the etag the write was based on. A caller that sent an etag
gets ABORTED when it is stale; a caller that did not is retried on a fresh read, since only the
server-side read went stale.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from makoto.tenant.v1 import tenant_pb2

from services.common import paging
from services.common.bindings.egress import EgressPolicy
from services.common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.common.usage import PLATFORM_AUDIT_CHAIN
from services.tenant import bindings as binding_rules
from services.tenant import residency
from services.tenant.model import UPDATABLE_STATES, State, TenantRecord, TenantSpec, check_transition
from services.tenant.offboarding.erasure import Erasure
from services.tenant.ports import (
    ChangeNotifier,
    IdentityProvider,
    Provisioner,
    ProvisioningError,
    TenantStore,
)

log = structlog.get_logger("makoto.tenant")

# Lost compare-and-swaps are retried on a fresh read after a short random pause, so writers
# racing on one tenant (possibly on different replicas) spread out instead of colliding again.
_CAS_ATTEMPTS = 8
_CAS_PAUSE_SECONDS = 0.02


async def _after_conflict(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, _CAS_PAUSE_SECONDS * (attempt + 1)))  # noqa: S311 - jitter, not a secret


def new_etag() -> str:
    return secrets.token_hex(8)


def not_found(tenant_id: str) -> NotFound:
    return NotFound(f"tenant {tenant_id} not found", reason="TENANT_NOT_FOUND")


class TenantManager:
    def __init__(
        self,
        store: TenantStore,
        provisioner: Provisioner,
        identity: IdentityProvider,
        notifier: ChangeNotifier | None = None,
        egress: EgressPolicy | None = None,
        erasure: Erasure | None = None,
        residency_policy: residency.ResidencyPolicy | None = None,
        allow_auto_provision: bool = True,
    ) -> None:
        # Where bindings may point (services/common/bindings/egress.py); none: loopback and
        # private endpoints are all refused.
        self._egress = egress or EgressPolicy()
        # Where the platform's own stores are, for the residency check (residency.py).
        self._residency = residency_policy or residency.ResidencyPolicy()
        # auto_provision (the storage adapters create resources on first use) is for development.
        self._allow_auto_provision = allow_auto_provision
        self._store = store
        self._provisioner = provisioner
        self._identity = identity
        self._notifier = notifier
        # Offboarding's journaled erasure (users, API keys, resources, usage, exports); without
        # it (unit wiring) offboarding removes users and resources only.
        self._erasure = erasure

    # -- reads ---------------------------------------------------------------------------

    async def get(self, tenant_id: str) -> TenantRecord:
        """The tenant unless it is unknown or DELETED (both NOT_FOUND)."""
        tenant = await self._store.get(tenant_id)
        if tenant is None or tenant.state == State.DELETED:
            raise not_found(tenant_id)
        return tenant

    async def get_any(self, tenant_id: str) -> TenantRecord:
        """The tenant in any state, DELETED included (its operations stay readable)."""
        tenant = await self._store.get(tenant_id)
        if tenant is None:
            raise not_found(tenant_id)
        return tenant

    async def in_states(self, states: Sequence[State]) -> Sequence[TenantRecord]:
        return await self._store.in_states(states)

    async def list(
        self, *, page_size: int, page_token: str, show_deleted: bool
    ) -> tuple[Sequence[TenantRecord], str]:
        scope = f"tenants:show_deleted={show_deleted}"
        after = paging.decode(page_token, scope)
        size = paging.page_size(page_size)
        found = await self._store.list(after=after, limit=size + 1, include_deleted=show_deleted)
        page = found[:size]
        next_token = paging.encode(page[-1].tenant_id, scope) if len(found) > size else ""
        return page, next_token

    # -- create --------------------------------------------------------------------------

    async def create(self, spec: TenantSpec, *, request_id: str) -> TenantRecord:
        """Store the tenant as PROVISIONING, provision it, end ACTIVE (or FAILED with a reason).
        The same request_id returns the tenant the first call made (AIP-155)."""
        tenant, fresh = await self.register(spec, request_id=request_id)
        return await self.provision(tenant) if fresh else tenant

    async def register(self, spec: TenantSpec, *, request_id: str) -> tuple[TenantRecord, bool]:
        """Check the spec and store the tenant as PROVISIONING, nothing provisioned yet. Returns
        the tenant and whether this call stored it (False: the tenant an earlier call with the
        same request_id made, in whatever state it is now)."""
        if spec.tenant_id == PLATFORM_AUDIT_CHAIN:
            # The platform's own audit chain is kept under this name.
            raise InvalidArgument(
                f"tenant id {spec.tenant_id!r} is reserved",
                field_violations=[("tenant.tenant_id", "reserved for the platform")],
                reason="TENANT_ID_RESERVED",
            )
        if request_id:
            earlier = await self._for_request(request_id, spec.tenant_id)
            if earlier is not None:
                return earlier, False
        await self._check_bindings(spec.bindings, spec.tenant_id)
        residency.check(spec.region, spec.bindings, policy=self._residency)
        now = datetime.now(UTC)
        chosen = {f.name: getattr(spec, f.name) for f in dataclasses.fields(TenantSpec)}
        chosen["bindings"] = binding_rules.with_defaults(spec.bindings)
        tenant = TenantRecord(
            **chosen,
            state=State.PROVISIONING,
            etag=new_etag(),
            create_time=now,
            update_time=now,
        )
        try:
            await self._store.insert(tenant, request_id or None)
        except AlreadyExists:
            # A concurrent retry of the same request may have won the race.
            if request_id:
                earlier = await self._for_request(request_id, spec.tenant_id)
                if earlier is not None:
                    return earlier, False
            raise
        log.info("tenant created", tenant_id=tenant.tenant_id)
        return tenant, True

    async def _check_bindings(self, bindings: tenant_pb2.TenantBindings, tenant_id: str) -> None:
        await binding_rules.check(bindings, "tenant.bindings", tenant_id=tenant_id, egress=self._egress)
        if not self._allow_auto_provision:
            binding_rules.refuse_auto_provision(bindings, "tenant.bindings")

    async def _for_request(self, request_id: str, tenant_id: str) -> TenantRecord | None:
        made = await self._store.tenant_for_request(request_id)
        if made is None:
            return None
        if made != tenant_id:
            raise InvalidArgument(
                "request_id was already used to create another tenant",
                field_violations=[("request_id", "already used for a different tenant_id")],
            )
        tenant = await self._store.get(made)
        if tenant is None:  # the key references the tenant: cannot happen short of manual edits
            raise not_found(made)
        return tenant

    async def provision(self, tenant: TenantRecord) -> TenantRecord:
        """Run (or resume) the tenant's provisioning; the tenant ACTIVE, or FAILED with the reason."""
        try:
            await self._provisioner.provision(tenant)
        except ProvisioningError as exc:
            log.warning("provisioning failed", tenant_id=tenant.tenant_id, reason=str(exc))
            return await self._move(tenant, State.FAILED, reason=str(exc))
        return await self._move(tenant, State.ACTIVE, reason="")

    # -- lifecycle -----------------------------------------------------------------------

    async def suspend(self, tenant_id: str, reason: str) -> TenantRecord:
        return await self._transition(tenant_id, State.SUSPENDED, reason=reason or "suspended")

    async def resume(self, tenant_id: str) -> TenantRecord:
        return await self._transition(tenant_id, State.ACTIVE, reason="")

    async def begin_offboarding(self, tenant_id: str, *, etag: str) -> TenantRecord:
        """The tenant OFFBOARDING (already OFFBOARDING: as it is); honours `etag`."""
        return await self._enter(tenant_id, State.OFFBOARDING, etag=etag)

    async def _enter(self, tenant_id: str, target: State, *, etag: str) -> TenantRecord:
        tenant = await self.get(tenant_id)
        if etag and etag != tenant.etag:
            raise _stale(tenant_id)
        if tenant.state == target:
            return tenant
        check_transition(tenant_id, tenant.state, target)
        try:
            return await self._move(tenant, target, reason="")
        except Aborted:
            if etag:  # the caller's etag went stale between our read and our write
                raise _stale(tenant_id) from None
            return await self._transition(tenant_id, target, reason="")

    async def delete(self, tenant_id: str, *, etag: str) -> TenantRecord:
        """Erasure: DELETING, erase users, keys, resources, usage and exports, DELETED. On an
        OFFBOARDING tenant this finishes its offboarding; otherwise it is offboarding without
        export. A DeleteTenant that was interrupted (tenant left DELETING) is finished by
        calling it again."""
        tenant = await self._enter(tenant_id, State.DELETING, etag=etag)
        return await self._offboard(tenant)

    async def _offboard(self, tenant: TenantRecord) -> TenantRecord:
        if self._erasure is not None:
            try:
                operation_id = await self._erasure.run(tenant)
            except ProvisioningError as exc:
                raise Unavailable(str(exc), reason="DEPROVISIONING_FAILED") from exc
            # The record stays as a tombstone (the id is never reused; invoices name it) without
            # anything the tenant configured.
            done = await self._write(
                tenant,
                {
                    "state": State.DELETED,
                    "state_reason": "",
                    "display_name": "",
                    "features": (),
                    "bindings": tenant_pb2.TenantBindings(),
                },
            )
            await self._erasure.finished(operation_id)
            log.info("tenant offboarded", tenant_id=tenant.tenant_id, operation_id=operation_id)
            return done
        # Users first: a Cognito identity store finds them through the tenant's group, which
        # deprovisioning removes.
        removed = await self._identity.remove_all(tenant.tenant_id)
        try:
            await self._provisioner.deprovision(tenant)
        except ProvisioningError as exc:
            log.warning("deprovisioning failed", tenant_id=tenant.tenant_id, reason=str(exc))
            raise Unavailable(str(exc), reason="DEPROVISIONING_FAILED") from exc
        done = await self._move(tenant, State.DELETED, reason="")
        log.info("tenant offboarded", tenant_id=tenant.tenant_id, users_removed=removed)
        return done

    async def _transition(self, tenant_id: str, target: State, *, reason: str) -> TenantRecord:
        for attempt in range(_CAS_ATTEMPTS):
            tenant = await self.get(tenant_id)
            check_transition(tenant_id, tenant.state, target)
            try:
                return await self._move(tenant, target, reason=reason)
            except Aborted:
                await _after_conflict(attempt)  # someone else wrote in between: decide again
        raise _busy(tenant_id)

    async def _move(self, tenant: TenantRecord, target: State, *, reason: str) -> TenantRecord:
        return await self._write(tenant, {"state": target, "state_reason": reason})

    async def _write(self, tenant: TenantRecord, changes: Mapping[str, Any]) -> TenantRecord:
        updated = dataclasses.replace(tenant, **changes, etag=new_etag(), update_time=datetime.now(UTC))
        await self._store.replace(updated, expected_etag=tenant.etag)
        # Every state, binding or plan change goes through here: push it to the data plane.
        if self._notifier is not None:
            try:
                await self._notifier.changed(updated)
            except Exception:  # the change is committed; the push is best effort
                log.exception("change notification failed", tenant_id=updated.tenant_id)
        return updated

    # -- update --------------------------------------------------------------------------

    async def update(
        self, tenant_id: str, build_changes: Callable[[TenantRecord], dict[str, Any]], *, etag: str
    ) -> TenantRecord:
        """Apply the changes `build_changes` derives from the current tenant; honours `etag`."""
        for attempt in range(_CAS_ATTEMPTS):
            tenant = await self.get(tenant_id)
            if etag and etag != tenant.etag:
                raise _stale(tenant_id)
            if tenant.state not in UPDATABLE_STATES:
                raise FailedPrecondition(
                    f"tenant {tenant_id} is {tenant.state}; it cannot be updated now",
                    reason="INVALID_STATE",
                    metadata={"current_state": str(tenant.state)},
                )
            changes = build_changes(tenant)
            if not changes:
                return tenant
            if "region" in changes or "bindings" in changes:
                residency.check(
                    changes.get("region", tenant.region),
                    changes.get("bindings", tenant.bindings),
                    policy=self._residency,
                )
            if "bindings" in changes:
                await self._check_bindings(changes["bindings"], tenant_id)
                await self._provision_bindings(dataclasses.replace(tenant, bindings=changes["bindings"]))
            try:
                return await self._write(tenant, changes)
            except Aborted:
                if etag:
                    raise _stale(tenant_id) from None
                await _after_conflict(attempt)
        raise _busy(tenant_id)

    async def _provision_bindings(self, tenant: TenantRecord) -> None:
        """New bindings may need new local resources (e.g. moving back to the LOCAL store)."""
        if tenant.state == State.FAILED:
            return  # nothing runs for a FAILED tenant until it is offboarded
        try:
            await self._provisioner.provision(tenant)
        except ProvisioningError as exc:
            raise FailedPrecondition(str(exc), reason="PROVISIONING_FAILED") from exc

    # -- start-up ------------------------------------------------------------------------

    async def recover(self) -> None:
        """Finish work a crash interrupted: provision PROVISIONING tenants, offboard DELETING ones."""
        for tenant in await self._store.in_states([State.PROVISIONING, State.DELETING]):
            try:
                if tenant.state == State.PROVISIONING:
                    await self.provision(tenant)
                else:
                    await self._offboard(tenant)
            except Exception:  # one stuck tenant must not keep the service down
                log.exception("recovery failed", tenant_id=tenant.tenant_id)


def _stale(tenant_id: str) -> Aborted:
    return Aborted(f"etag does not match tenant {tenant_id}; read it again", reason="ETAG_MISMATCH")


def _busy(tenant_id: str) -> Aborted:
    return Aborted(f"tenant {tenant_id} is changing concurrently; retry", reason="CONCURRENT_UPDATE")
