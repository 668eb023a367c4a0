"""Who may call each RPC is stated once, in the contract (the makoto.api.v1.access option); the
interceptor's policies and Envoy's access classes are derived from it. These tests pin the
derivation and the build's refusal of a missing or inconsistent rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from makoto.api.v1 import access_pb2
from makoto.llm.v1 import llm_pb2
from makoto.metering.v1 import metering_pb2
from makoto.storage.v1 import storage_service_pb2
from makoto.tenant.v1 import directory_pb2, tenant_pb2

from services.common.access import AccessRuleError, contract_services, policies_for, problems
from services.common.identity import Role
from services.mesh.envoy_config import DESCRIPTOR_PATH
from services.mesh.methods import Access, load_descriptor_set, public_methods
from tests.support import run_gen_check

ROOT = Path(__file__).resolve().parents[2]
PA, TA, MEMBER, SERVICE = Role.PLATFORM_ADMIN, Role.TENANT_ADMIN, Role.MEMBER, Role.SERVICE

ALL = policies_for(
    tenant_pb2.DESCRIPTOR.services_by_name["TenantService"],
    directory_pb2.DESCRIPTOR.services_by_name["TenantDirectoryService"],
    storage_service_pb2.DESCRIPTOR.services_by_name["StorageService"],
    llm_pb2.DESCRIPTOR.services_by_name["LLMService"],
    metering_pb2.DESCRIPTOR.services_by_name["MeteringService"],
)


def test_every_rpc_of_the_contract_has_a_consistent_rule() -> None:
    services = contract_services(load_descriptor_set(DESCRIPTOR_PATH))
    assert len(services) == 5
    assert problems(services) == []
    assert len(ALL) == sum(len(s.methods) for s in services)


@pytest.mark.parametrize(
    ("path", "roles", "cross", "tenant_field", "rate_class", "metered"),
    [
        # Tenant data: the tenant's own users only, never platform-admin.
        ("/makoto.storage.v1.StorageService/GetItem", {TA, MEMBER}, set(), "tenant_id", "reads", True),
        ("/makoto.storage.v1.StorageService/PutItem", {TA, MEMBER}, set(), "tenant_id", "writes", True),
        (
            "/makoto.storage.v1.StorageService/UploadObject",
            {TA, MEMBER},
            set(),
            "header.tenant_id",
            "writes",
            True,
        ),
        ("/makoto.llm.v1.LLMService/StreamChatCompletion", {TA, MEMBER}, set(), "tenant_id", "llm", True),
        ("/makoto.llm.v1.LLMService/CountTokens", {TA, MEMBER}, set(), "tenant_id", "reads", True),
        # Control plane.
        ("/makoto.tenant.v1.TenantService/CreateTenant", {PA}, {PA}, "tenant.tenant_id", None, True),
        ("/makoto.tenant.v1.TenantService/ListTenants", {PA}, {PA}, None, None, True),
        ("/makoto.metering.v1.MeteringService/SetTenantLimits", {PA}, {PA}, "tenant_id", None, True),
        # Tenant reads the operator also makes; user management by tenant-admins only.
        ("/makoto.tenant.v1.TenantService/GetTenant", {TA, MEMBER, PA}, {PA}, "tenant_id", None, True),
        ("/makoto.tenant.v1.TenantService/InviteUser", {TA, PA}, {PA}, "tenant_id", None, True),
        (
            "/makoto.metering.v1.MeteringService/QueryUsage",
            {TA, MEMBER, PA, SERVICE},
            {PA, SERVICE},
            "tenant_id",
            "reads",
            True,
        ),
        (
            "/makoto.metering.v1.MeteringService/GetTenantLimits",
            {TA, MEMBER, PA, SERVICE},
            {PA, SERVICE},
            "tenant_id",
            "reads",
            True,
        ),
        # Service-to-service: any tenant; metered for the platform (payer=platform) when it
        # names a tenant; RecordUsage names none (delivering usage never makes usage).
        (
            "/makoto.tenant.v1.TenantDirectoryService/ResolveTenant",
            {SERVICE},
            {SERVICE},
            "tenant_id",
            None,
            True,
        ),
        ("/makoto.metering.v1.MeteringService/RecordUsage", {SERVICE}, {SERVICE}, None, None, False),
    ],
)
def test_policies_follow_the_rules(
    path: str,
    roles: set[Role],
    cross: set[Role],
    tenant_field: str | None,
    rate_class: str | None,
    metered: bool,
) -> None:
    policy = ALL[path]
    assert policy.roles == roles
    assert policy.cross_tenant_roles == cross
    assert policy.tenant_field == tenant_field
    assert policy.rate_class == rate_class
    assert policy.metered is metered


def test_envoy_access_classes_agree_with_the_policies() -> None:
    """What Envoy lets through, the service lets through too (Envoy is the coarser check)."""
    methods = public_methods(DESCRIPTOR_PATH)
    assert {m.access for m in methods} == set(Access)
    for m in methods:
        policy = ALL[m.grpc_path]
        if m.access is Access.INTERNAL:
            assert policy.roles == {SERVICE}, m.full_name
        elif m.access is Access.ADMIN:
            assert policy.roles == {PA} and m.tenant_field is None, m.full_name
        elif m.access is Access.TENANT_OR_ADMIN:
            assert PA in policy.cross_tenant_roles and m.tenant_field == policy.tenant_field, m.full_name
        else:
            assert PA not in policy.roles and not policy.cross_tenant_roles, m.full_name
            assert m.tenant_field == policy.tenant_field, m.full_name


def _contract_with(method: str, rule: access_pb2.AccessRule | None) -> descriptor_pb2.FileDescriptorSet:
    """The real contract with one method's rule replaced (None: removed)."""
    fds = load_descriptor_set(DESCRIPTOR_PATH)
    service, _, name = method.rpartition(".")
    for f in fds.file:
        for s in f.service:
            if f"{f.package}.{s.name}" != service:
                continue
            for m in s.method:
                if m.name == name:
                    m.options.ClearExtension(access_pb2.access)
                    if rule is not None:
                        m.options.Extensions[access_pb2.access].CopyFrom(rule)
                    return fds
    raise AssertionError(method)


R = access_pb2
BAD_RULES = [
    (None, "has no (makoto.api.v1.access) option"),
    (R.AccessRule(), "lets nobody call"),
    (
        R.AccessRule(internal=True, roles=[R.ROLE_MEMBER], tenant_field="tenant_id"),
        "an internal or public rule names no roles",
    ),
    (R.AccessRule(roles=[R.ROLE_MEMBER]), "tenant roles need a tenant_field"),
    (R.AccessRule(roles=[R.ROLE_UNSPECIFIED], tenant_field="tenant_id"), "ROLE_UNSPECIFIED"),
    (R.AccessRule(roles=[R.ROLE_MEMBER], tenant_field="tenant"), "has no field 'tenant'"),
    (R.AccessRule(roles=[R.ROLE_MEMBER], tenant_field="chunk"), "is not a singular string field"),
    (R.AccessRule(roles=[R.ROLE_MEMBER], tenant_field="chunk.x"), "'chunk' is not a singular message"),
    (R.AccessRule(roles=[R.ROLE_MEMBER], tenant_field="header.x"), "UploadObjectHeader has no field 'x'"),
]


@pytest.mark.parametrize(("rule", "message"), BAD_RULES, ids=[m for _, m in BAD_RULES])
def test_a_missing_or_inconsistent_rule_is_named(rule: access_pb2.AccessRule | None, message: str) -> None:
    fds = _contract_with("makoto.storage.v1.StorageService.UploadObject", rule)
    [found] = problems(contract_services(fds))
    assert found.startswith("makoto.storage.v1.StorageService.UploadObject") and message in found


def test_envoy_renderer_refuses_a_method_without_a_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.binpb"
    bad.write_bytes(_contract_with("makoto.llm.v1.LLMService.ListModels", None).SerializeToString())
    with pytest.raises(AccessRuleError, match=r"LLMService\.ListModels has no"):
        public_methods(bad)


def test_gen_stops_on_a_method_without_a_rule(tmp_path: Path) -> None:
    """scripts/gen.py's check over the descriptor set it just wrote."""
    bad = tmp_path / "bad.binpb"
    bad.write_bytes(_contract_with("makoto.tenant.v1.TenantService.GetTenant", None).SerializeToString())
    run = run_gen_check("check_access", bad)
    assert run.returncode != 0
    assert "TenantService.GetTenant has no (makoto.api.v1.access) option" in run.stderr
