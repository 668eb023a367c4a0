"""Bind-time rules that depend on the deployment profile, on a TenantService in the production
profile (MAKOTO_PROFILE=production, MAKOTO_PLATFORM_REGION=us-east-1), next to the development
one (the `client` of the other tenant tests):

- `auto_provision` (storage adapters create resources on first use, without the platform's
  settings or a journal) is refused with FAILED_PRECONDITION AUTO_PROVISION_NOT_ALLOWED on create
  and on a re-bind; `managed` is the production way and is accepted;
- the platform's own stores are located at MAKOTO_PLATFORM_REGION for the residency check.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.config import MeshSettings
from services.tenant.server import build
from tests.support import bearer, direct_channel, make_settings, running_server
from tests.unit.tenant.conftest import TenantClient, error_info, rpc_error

B = tenant_pb2


def _local_auto(flag: str = "true") -> B.TenantBindings:
    """A PostgreSQL item binding on loopback (passes the egress rules) asking for auto_provision."""
    return B.TenantBindings(
        item_store=B.ItemStoreBinding(
            backend=B.ITEM_BACKEND_POSTGRES,
            endpoint="postgresql://127.0.0.1:5432/app",
            options={"auto_provision": flag, "location": "us-east-2"},
        )
    )


@pytest.fixture
def production(tmp_path: Path) -> MeshSettings:
    return make_settings(tmp_path / "prod-home", profile="production", platform_region="us-east-1")


@pytest.fixture
async def prod(production: MeshSettings) -> AsyncIterator[tenant_pb2_grpc.TenantServiceStub]:
    url = f"sqlite+aiosqlite:///{production.data_dir / 'tenant.sqlite3'}"
    server = functools.partial(build, db_url=url, recorder_factory=None, usage_eraser_factory=None)
    async with running_server(server, production):
        async with direct_channel(production.address("tenant")) as channel:
            yield tenant_pb2_grpc.TenantServiceStub(channel)


async def test_auto_provision_is_refused_outside_development(
    prod: tenant_pb2_grpc.TenantServiceStub, production: MeshSettings
) -> None:
    admin = bearer(production, "platform-admin")

    def create(tid: str, bindings: B.TenantBindings) -> Any:
        return prod.CreateTenant(
            B.CreateTenantRequest(tenant=B.Tenant(tenant_id=tid, bindings=bindings)), metadata=admin
        )

    err = await rpc_error(create("auto", _local_auto()))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err)
    assert info.reason == "AUTO_PROVISION_NOT_ALLOWED"
    assert info.metadata["bindings"] == "tenant.bindings.item_store.options[auto_provision]"
    assert "managed" in (err.details() or "")
    missing = await rpc_error(prod.GetTenant(B.GetTenantRequest(tenant_id="auto"), metadata=admin))
    assert missing.code() == grpc.StatusCode.NOT_FOUND  # nothing stored

    # "false" asks for nothing; the tenant is created. A re-bind asking for it is refused too.
    made = await create("auto", _local_auto("false"))
    assert made.state == B.TENANT_STATE_ACTIVE
    err = await rpc_error(
        prod.UpdateTenant(
            B.UpdateTenantRequest(
                tenant=B.Tenant(tenant_id="auto", bindings=_local_auto("TRUE")),
                update_mask=field_mask_pb2.FieldMask(paths=["bindings"]),
            ),
            metadata=admin,
        )
    )
    assert error_info(err).reason == "AUTO_PROVISION_NOT_ALLOWED"


async def test_auto_provision_is_accepted_in_development(client: TenantClient) -> None:
    made = await client.create("auto-dev", bindings=_local_auto())
    assert made.state == B.TENANT_STATE_ACTIVE
    assert made.bindings.item_store.options["auto_provision"] == "true"


async def test_the_platforms_own_stores_are_at_the_platform_region(
    prod: tenant_pb2_grpc.TenantServiceStub, production: MeshSettings
) -> None:
    admin = bearer(production, "platform-admin")
    # Embedded defaults (LOCAL, SQLite, the platform's LLM endpoint) live in us-east-1.
    made = await prod.CreateTenant(
        B.CreateTenantRequest(tenant=B.Tenant(tenant_id="home-us", region="us")), metadata=admin
    )
    assert made.state == B.TENANT_STATE_ACTIVE
    err = await rpc_error(
        prod.CreateTenant(
            B.CreateTenantRequest(tenant=B.Tenant(tenant_id="home-jp", region="jp")), metadata=admin
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err).reason == "RESIDENCY_VIOLATION"
    assert set(error_info(err).metadata["bindings"].split(",")) == {
        "tenant.bindings.object_store",
        "tenant.bindings.item_store",
        "tenant.bindings.llm",
    }
