"""The tenant domain: lifecycle states and their transitions, tenant and user records.

Bindings stay the contract's `TenantBindings` message: it is the one description of a tenant's
resources that every service shares, and copying it into parallel dataclasses would only add a
second place to keep in step with the proto.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from makoto.tenant.v1 import tenant_pb2

from services.common.errors import FailedPrecondition


class State(StrEnum):
    PROVISIONING = "PROVISIONING"
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    FAILED = "FAILED"
    DELETING = "DELETING"
    DELETED = "DELETED"
    OFFBOARDING = "OFFBOARDING"


# PROVISIONING -> ACTIVE | FAILED; ACTIVE <-> SUSPENDED; ACTIVE/SUSPENDED/FAILED -> OFFBOARDING
# (export) -> DELETING (erasure) -> DELETED; without export ACTIVE/SUSPENDED/FAILED -> DELETING.
TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.PROVISIONING: frozenset({State.ACTIVE, State.FAILED}),
    State.ACTIVE: frozenset({State.SUSPENDED, State.OFFBOARDING, State.DELETING}),
    State.SUSPENDED: frozenset({State.ACTIVE, State.OFFBOARDING, State.DELETING}),
    State.FAILED: frozenset({State.OFFBOARDING, State.DELETING}),
    State.OFFBOARDING: frozenset({State.DELETING}),
    State.DELETING: frozenset({State.DELETED}),
    State.DELETED: frozenset(),
}

# States in which configuration (display name, bindings, ...) may change.
UPDATABLE_STATES = frozenset({State.ACTIVE, State.SUSPENDED, State.FAILED})


def check_transition(tenant_id: str, current: State, target: State) -> None:
    """FAILED_PRECONDITION naming the current state when `current -> target` is not allowed."""
    if target not in TRANSITIONS[current]:
        raise FailedPrecondition(
            f"tenant {tenant_id} is {current}; it cannot become {target}",
            reason="INVALID_STATE_TRANSITION",
            metadata={"current_state": str(current), "requested_state": str(target)},
        )


class CloudProvider(StrEnum):
    LOCAL = "LOCAL"
    AWS = "AWS"
    AZURE = "AZURE"
    CUSTOM = "CUSTOM"


class UserRole(StrEnum):
    TENANT_ADMIN = "TENANT_ADMIN"
    MEMBER = "MEMBER"


@dataclass(frozen=True)
class TenantSpec:
    """What a caller chooses about a tenant (everything but lifecycle bookkeeping)."""

    tenant_id: str
    display_name: str = ""
    cloud_provider: CloudProvider = CloudProvider.LOCAL
    region: str = ""
    features: tuple[str, ...] = ()
    bindings: tenant_pb2.TenantBindings = field(default_factory=tenant_pb2.TenantBindings)
    price_plan_id: str = ""


@dataclass(frozen=True)
class TenantRecord(TenantSpec):
    """A stored tenant. `etag` changes on every write (new value from the store's caller)."""

    state: State = State.PROVISIONING
    state_reason: str = ""
    etag: str = ""
    create_time: datetime | None = None
    update_time: datetime | None = None


@dataclass(frozen=True)
class UserRecord:
    user_id: str
    tenant_id: str
    email: str
    role: UserRole
    create_time: datetime
