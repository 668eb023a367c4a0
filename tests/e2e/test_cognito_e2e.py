"""A Cognito user's token end to end: a mesh whose TenantService keeps users in moto's
cognito-idp pool and whose Envoy and services trust that pool (remote JWKS on moto). The
platform invites a tenant-admin over REST; she signs in at the pool and her ID token works
through Envoy at every service (tenant, storage objects and items, LLM, metering); once removed
she can no longer sign in."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from services.common.config import JwtProvider
from services.common.identity import Role
from tests.contract.emulators import MOTO_CREDENTIALS, Emulator, moto_server  # noqa: F401
from tests.mesh_fixture import RunningMesh, start_mesh, stop_mesh

pytestmark = pytest.mark.e2e
PASSWORD = "Corr3ct-Horse-Battery!"


def _idp(endpoint: str) -> Any:
    return boto3.client(
        "cognito-idp",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=MOTO_CREDENTIALS["access_key_id"],
        aws_secret_access_key=MOTO_CREDENTIALS["secret_access_key"],
    )


@pytest.fixture(scope="module")
def cognito_mesh(
    moto_server: Emulator,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningMesh, Any, str, str]]:
    idp = _idp(moto_server.endpoint)
    pool = idp.create_user_pool(
        PoolName=f"makoto-e2e-{uuid.uuid4().hex[:6]}",
        Schema=[
            {"Name": "tenant_id", "AttributeDataType": "String", "Mutable": True},
            {"Name": "role", "AttributeDataType": "String", "Mutable": True},
        ],
    )["UserPool"]["Id"]
    client = idp.create_user_pool_client(
        UserPoolId=pool, ClientName="web", ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    provider = JwtProvider(
        name="cognito",
        issuer=f"https://cognito-idp.us-east-1.amazonaws.com/{pool}",
        jwks_url=f"{moto_server.endpoint}/{pool}/.well-known/jwks.json",
        client_ids=[client],
    )
    env = {
        "MAKOTO_EXTRA_JWT_PROVIDERS": json.dumps([provider.model_dump(mode="json")]),
        "MAKOTO_AWS_ENDPOINT_URL": moto_server.endpoint,
        "MAKOTO_AWS_REGION": "us-east-1",
        "MAKOTO_AWS_ACCESS_KEY_ID": MOTO_CREDENTIALS["access_key_id"],
        "MAKOTO_AWS_SECRET_ACCESS_KEY": MOTO_CREDENTIALS["secret_access_key"],
        "MAKOTO_AWS_COGNITO_USER_POOL_ID": pool,
    }
    root: Path = tmp_path_factory.mktemp("cognito-mesh")
    mesh = start_mesh(root, extra_env=env, extra_jwt_providers=[provider])
    try:
        yield mesh, idp, pool, client
    finally:
        stop_mesh(mesh)


async def test_a_cognito_token_works_through_envoy_at_every_service(
    cognito_mesh: tuple[RunningMesh, Any, str, str],
) -> None:
    mesh, idp, pool, client = cognito_mesh
    tenant = f"cg-{uuid.uuid4().hex[:10]}"
    admin = mesh.headers(Role.PLATFORM_ADMIN)
    api = f"/api/v1/tenants/{tenant}"
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        assert (
            await c.post("/api/v1/admin/tenants", json={"tenantId": tenant}, headers=admin)
        ).status_code == 200
        invited = await c.post(
            f"{api}/users",
            json={"email": "carol@example.test", "role": "USER_ROLE_TENANT_ADMIN"},
            headers=admin,
        )
        assert invited.status_code == 200, invited.text
        username = f"{tenant}:carol@example.test"
        idp.admin_set_user_password(UserPoolId=pool, Username=username, Password=PASSWORD, Permanent=True)

        def sign_in() -> str:
            answer = idp.admin_initiate_auth(
                UserPoolId=pool,
                ClientId=client,
                AuthFlow="ADMIN_USER_PASSWORD_AUTH",
                AuthParameters={"USERNAME": username, "PASSWORD": PASSWORD},
            )
            return str(answer["AuthenticationResult"]["IdToken"])

        carol = {"Authorization": f"Bearer {sign_in()}"}
        checks = {
            "tenant": await c.get(api, headers=carol),
            "users": await c.get(f"{api}/users", headers=carol),
            "object": await c.put(
                f"{api}/objects/a.txt", content=b"hi", headers={**carol, "Content-Type": "text/plain"}
            ),
            "item": await c.put(
                f"{api}/collections/c/partitions/p/items/s",
                json={"attributes": {"x": {"stringValue": "y"}}},
                headers=carol,
            ),
            "llm": await c.post(
                f"{api}/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}]},
                headers=carol,
            ),
            "metering": await c.get(f"{api}/limits", headers=carol),
        }
        assert {k: r.status_code for k, r in checks.items()} == dict.fromkeys(checks, 200), {
            k: r.text[:200] for k, r in checks.items() if r.status_code != 200
        }
        # Her token is hers only: another tenant is refused at Envoy.
        assert (await c.get("/api/v1/tenants/someone-else", headers=carol)).status_code == 403

        await c.delete(f"{api}/users/{invited.json()['userId']}", headers=admin)
        with pytest.raises(idp.exceptions.NotAuthorizedException):
            sign_in()
