"""The state machine over the API: invalid transitions are FAILED_PRECONDITION naming the state."""

from __future__ import annotations

import grpc
import pytest
from makoto.tenant.v1 import tenant_pb2

from services.common.errors import FailedPrecondition
from services.tenant.model import TRANSITIONS, State, check_transition
from tests.unit.tenant.conftest import TenantClient, error_info, rpc_error


async def test_suspend_twice_and_resume_active_are_refused_naming_the_state(client: TenantClient) -> None:
    await client.create("states")
    resume_active = await rpc_error(
        client.tenants.ResumeTenant(tenant_pb2.ResumeTenantRequest(tenant_id="states"), metadata=client.admin)
    )
    assert resume_active.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ACTIVE" in (resume_active.details() or "")
    info = error_info(resume_active)
    assert info.reason == "INVALID_STATE_TRANSITION"
    assert dict(info.metadata) == {"current_state": "ACTIVE", "requested_state": "ACTIVE"}

    await client.tenants.SuspendTenant(
        tenant_pb2.SuspendTenantRequest(tenant_id="states"), metadata=client.admin
    )
    again = await rpc_error(
        client.tenants.SuspendTenant(
            tenant_pb2.SuspendTenantRequest(tenant_id="states"), metadata=client.admin
        )
    )
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(again).metadata["current_state"] == "SUSPENDED"
    assert (await client.get("states")).state == tenant_pb2.TENANT_STATE_SUSPENDED


async def test_a_suspended_tenant_can_be_offboarded(client: TenantClient) -> None:
    await client.create("leaving")
    await client.tenants.SuspendTenant(
        tenant_pb2.SuspendTenantRequest(tenant_id="leaving"), metadata=client.admin
    )
    deleted = await client.tenants.DeleteTenant(
        tenant_pb2.DeleteTenantRequest(tenant_id="leaving"), metadata=client.admin
    )
    assert deleted.state == tenant_pb2.TENANT_STATE_DELETED
    err = await rpc_error(
        client.tenants.ResumeTenant(
            tenant_pb2.ResumeTenantRequest(tenant_id="leaving"), metadata=client.admin
        )
    )
    assert err.code() == grpc.StatusCode.NOT_FOUND


async def test_lifecycle_calls_on_unknown_tenants_are_not_found(client: TenantClient) -> None:
    for call in (
        client.tenants.SuspendTenant(
            tenant_pb2.SuspendTenantRequest(tenant_id="ghost"), metadata=client.admin
        ),
        client.tenants.ResumeTenant(tenant_pb2.ResumeTenantRequest(tenant_id="ghost"), metadata=client.admin),
        client.tenants.DeleteTenant(tenant_pb2.DeleteTenantRequest(tenant_id="ghost"), metadata=client.admin),
        client.tenants.GetTenant(tenant_pb2.GetTenantRequest(tenant_id="ghost"), metadata=client.admin),
    ):
        err = await rpc_error(call)
        assert err.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(err).reason == "TENANT_NOT_FOUND"


ALLOWED = {
    (State.PROVISIONING, State.ACTIVE),
    (State.PROVISIONING, State.FAILED),
    (State.ACTIVE, State.SUSPENDED),
    (State.SUSPENDED, State.ACTIVE),
    (State.ACTIVE, State.DELETING),
    (State.SUSPENDED, State.DELETING),
    (State.FAILED, State.DELETING),
    (State.DELETING, State.DELETED),
    (State.ACTIVE, State.OFFBOARDING),
    (State.SUSPENDED, State.OFFBOARDING),
    (State.FAILED, State.OFFBOARDING),
    (State.OFFBOARDING, State.DELETING),
}


@pytest.mark.parametrize("current", list(State))
@pytest.mark.parametrize("target", list(State))
def test_transition_table(current: State, target: State) -> None:
    assert ((current, target) in ALLOWED) == (target in TRANSITIONS[current])
    if (current, target) in ALLOWED:
        check_transition("t", current, target)
    else:
        with pytest.raises(FailedPrecondition) as info:
            check_transition("t", current, target)
        assert str(current) in info.value.message
