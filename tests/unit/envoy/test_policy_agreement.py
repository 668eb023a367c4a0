"""Envoy's access table (services/mesh/methods.py) and each service's own policy table must say
the same thing: a method Envoy lets platform-admin through is one the service lets it use, and
the other way round; internal RPCs are service-only in the service and unrouted in Envoy."""

from __future__ import annotations

import pytest

from services.common.identity import Role
from services.common.policy import MethodPolicy
from services.mesh.envoy_config import DESCRIPTOR_PATH
from services.mesh.methods import Access, Method, public_methods


def service_policies() -> dict[str, MethodPolicy]:
    from services.llm.server import POLICIES as LLM
    from services.metering.policies import POLICIES as METERING
    from services.storage.server import policies as storage_policies
    from services.tenant.policies import POLICIES as TENANT

    return {**TENANT, **storage_policies(), **LLM, **METERING}


@pytest.mark.parametrize("method", public_methods(DESCRIPTOR_PATH), ids=lambda m: m.full_name)
def test_envoy_and_service_agree(method: Method) -> None:
    policy = service_policies().get(method.grpc_path)
    assert policy is not None, f"{method.grpc_path} has no policy in its service"
    if method.access is Access.INTERNAL:
        assert policy.roles == {Role.SERVICE}
    elif method.access is Access.ADMIN:
        assert policy.roles == {Role.PLATFORM_ADMIN}
    elif method.access is Access.TENANT_OR_ADMIN:
        assert Role.PLATFORM_ADMIN in policy.roles and Role.PLATFORM_ADMIN in policy.cross_tenant_roles
        assert policy.tenant_field == method.tenant_field
    else:
        assert Role.PLATFORM_ADMIN not in policy.roles
        assert policy.cross_tenant_roles == frozenset()
        assert policy.tenant_field == method.tenant_field
