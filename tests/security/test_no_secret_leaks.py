"""No answer and no log line carries a secret or another tenant's data.

The test provokes errors where a secret is close at hand — an LLM binding whose key the provider
rejects, a binding naming a missing secret, forged and foreign tokens, another tenant's data —
collects every answer (REST bodies and headers, gRPC messages, google.rpc.Status details,
trailers, and a few successful reads of bindings), then searches them and all of the mesh's logs
for the simulator's API key, the rejected key, the dev signing key, the secret store's own key,
the bearer tokens used, and the other tenant's data."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from grpc_status import rpc_status
from makoto.llm.v1 import llm_pb2
from makoto.storage.v1 import items_pb2
from makoto.tenant.v1 import directory_pb2

from services.common.identity import Role
from services.common.secrets import LocalSecretStore
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import (
    API,
    BAD_TOKEN_KINDS,
    bad_token,
    bearer_md,
    create_tenant,
    new_tenant_id,
    stubs,
)
from tests.support import direct_channel

pytestmark = pytest.mark.e2e


class Answers:
    """Everything the attacker got back, as text."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []
        self.tokens: list[str] = []

    def rest(self, what: str, r: httpx.Response) -> httpx.Response:
        self.texts.append((what, f"{r.status_code} {dict(r.headers)} {r.text}"))
        return r

    async def grpc(self, what: str, call: Any) -> grpc.StatusCode:
        try:
            result = await call
        except grpc.aio.AioRpcError as err:
            status = rpc_status.from_call(err)
            self.texts.append((what, f"{err.code()} {err.details()} {err.trailing_metadata()} {status}"))
            return err.code()
        self.texts.append((what, str(result)))
        return grpc.StatusCode.OK

    def token(self, mesh: RunningMesh, role: Role, tenant: str | None = None) -> dict[str, str]:
        headers = mesh.headers(role, tenant)
        self.tokens.append(headers["authorization"].removeprefix("Bearer "))
        return headers

    def md(self, mesh: RunningMesh, role: Role, tenant: str | None = None) -> tuple[tuple[str, str], ...]:
        return tuple(self.token(mesh, role, tenant).items())


async def _drain(stream: AsyncIterator[Any]) -> list[Any]:
    return [message async for message in stream]


def secrets_of(mesh: RunningMesh, rejected_key: str) -> dict[str, str]:
    store_key = (mesh.settings.keys_dir / "secrets.key").read_text().strip()
    simulator_key = LocalSecretStore(mesh.settings).get("llm-simulator-key")
    assert simulator_key and simulator_key.startswith("sk-sim-")
    pem_lines = [
        line
        for line in mesh.settings.signing_key_path.read_text().splitlines()
        if line and not line.startswith("-----")
    ]
    found = {
        "simulator key": simulator_key,
        "simulator key (last 8)": simulator_key[-8:],
        "rejected key": rejected_key,
        "rejected key (last 8)": rejected_key[-8:],
        "secret store key": store_key,
    }
    found.update({f"signing key line {i}": line for i, line in enumerate(pem_lines)})
    return found


async def test_errors_and_logs_never_carry_secrets(mesh: RunningMesh) -> None:
    # A tenant whose LLM key the provider rejects, one whose key reference does not resolve,
    # and a victim with private data.
    rejected_key = f"sk-rejected-{uuid.uuid4().hex}"
    # Bindings name only their own tenant's secrets (local://tenants/<tenant>/...).
    wrong_id, missing_id = new_tenant_id("sec-leak-w"), new_tenant_id("sec-leak-m")
    secret_name = f"tenants/{wrong_id}/rejected-{uuid.uuid4().hex[:8]}"
    missing_ref = f"local://tenants/{missing_id}/no-such-secret"
    LocalSecretStore(mesh.settings).set(secret_name, rejected_key)
    llm_binding = {"provider": "LLM_PROVIDER_OPENAI", "chatModel": "sim-chat", "embeddingModel": "sim-embed"}
    wrong = create_tenant(
        mesh,
        "sec-leak-w",
        tenant_id=wrong_id,
        bindings={"llm": {**llm_binding, "apiKeySecretRef": f"local://{secret_name}"}},
    )
    missing = create_tenant(
        mesh,
        "sec-leak-m",
        tenant_id=missing_id,
        bindings={"llm": {**llm_binding, "apiKeySecretRef": missing_ref}},
    )
    victim = create_tenant(mesh, "sec-leak-v")
    private = f"victim-private-{uuid.uuid4().hex}"
    a = Answers()
    chat = {"messages": [{"role": "user", "content": "hello"}]}

    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as c:
        r = await c.put(
            f"{API}/tenants/{victim}/collections/c/partitions/p/items/s",
            json={"attributes": {"private": {"stringValue": private}}},
            headers=mesh.headers(Role.TENANT_ADMIN, victim),
        )
        assert r.status_code == 200
        # The rejected key: 400 FAILED_PRECONDITION, plain and streamed.
        w = a.token(mesh, Role.MEMBER, wrong)
        r = a.rest(
            "chat, rejected key",
            await c.post(f"{API}/tenants/{wrong}/chat/completions", json=chat, headers=w),
        )
        assert r.status_code == 400 and r.json()["details"][0]["reason"] == "LLM_CREDENTIALS_REJECTED"
        r = a.rest(
            "stream, rejected key",
            await c.post(f"{API}/tenants/{wrong}/chat/completions:stream", json=chat, headers=w),
        )
        assert r.status_code == 400
        a.rest("models, rejected key", await c.get(f"{API}/tenants/{wrong}/models", headers=w))
        a.rest(
            "embeddings, rejected key",
            await c.post(f"{API}/tenants/{wrong}/embeddings", json={"input": ["x"]}, headers=w),
        )
        # The missing secret: the error names neither the secret nor its value.
        m = a.token(mesh, Role.MEMBER, missing)
        r = a.rest(
            "chat, missing secret",
            await c.post(f"{API}/tenants/{missing}/chat/completions", json=chat, headers=m),
        )
        # Members learn why (the reason), not which secret: its name is not echoed.
        assert r.status_code == 400 and "SECRET_NOT_FOUND" in r.text and "no-such-secret" not in r.text
        # Bindings as the tenant and the platform see them: references, never values.
        r = a.rest("tenant record", await c.get(f"{API}/tenants/{wrong}", headers=w))
        assert r.json()["bindings"]["llm"]["apiKeySecretRef"] == f"local://{secret_name}"
        a.rest("tenant list", await c.get(f"{API}/admin/tenants", headers=a.token(mesh, Role.PLATFORM_ADMIN)))
        # Another tenant's data, by path, query and body.
        attacker = a.token(mesh, Role.TENANT_ADMIN, wrong)
        for what, method, url, body in (
            ("path", "GET", f"{API}/tenants/{victim}/collections/c/partitions/p/items/s", None),
            (
                "query",
                "GET",
                f"{API}/tenants/{wrong}/collections/c/partitions/p/items/s?tenant_id={victim}",
                None,
            ),
            (
                "body",
                "POST",
                f"{API}/tenants/{wrong}/items:batchGet",
                {"tenant_id": victim, "keys": [{"collection": "c", "partitionKey": "p", "sortKey": "s"}]},
            ),
        ):
            r = a.rest(f"victim by {what}", await c.request(method, url, json=body, headers=attacker))
            assert r.status_code == 403
        # Bad tokens, and errors of the attacker's own tenant.
        for kind in BAD_TOKEN_KINDS:
            token = bad_token(mesh, kind, Role.PLATFORM_ADMIN, None)
            headers = {} if token is None else {"authorization": f"Bearer {token}"}
            a.rest(f"token {kind}", await c.get(f"{API}/admin/tenants", headers=headers))
        a.rest("404", await c.get(f"{API}/tenants/{wrong}/objects/none", headers=attacker))
        a.rest(
            "400", await c.get(f"{API}/tenants/{wrong}/collections/-/partitions/p/items/s", headers=attacker)
        )

    md_w = a.md(mesh, Role.MEMBER, wrong)
    request = llm_pb2.CreateChatCompletionRequest(
        tenant_id=wrong, messages=[llm_pb2.ChatMessage(role="user", content="x")]
    )
    for target in (mesh.address("llm"), mesh.grpc_target):
        async with mesh.channel(target) as ch:
            s = stubs(ch)
            code = await a.grpc("grpc chat, rejected key", s.llm.CreateChatCompletion(request, metadata=md_w))
            assert code == grpc.StatusCode.FAILED_PRECONDITION
            code = await a.grpc(
                "grpc stream, rejected key", _drain(s.llm.StreamChatCompletion(request, metadata=md_w))
            )
            assert code == grpc.StatusCode.FAILED_PRECONDITION
    async with direct_channel(mesh.address("storage")) as ch:
        s = stubs(ch)
        get_victim = items_pb2.GetItemRequest(
            tenant_id=victim, collection="c", partition_key="p", sort_key="s"
        )
        code = await a.grpc(
            "grpc victim item", s.storage.GetItem(get_victim, metadata=a.md(mesh, Role.TENANT_ADMIN, wrong))
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
        for kind in BAD_TOKEN_KINDS:
            md = bearer_md(bad_token(mesh, kind, Role.TENANT_ADMIN, victim))
            assert await a.grpc(f"grpc token {kind}", s.storage.GetItem(get_victim, metadata=md)) == (
                grpc.StatusCode.UNAUTHENTICATED
            )
    async with direct_channel(mesh.address("tenant")) as ch:
        code = await a.grpc(
            "resolve",
            stubs(ch).directory.ResolveTenant(
                directory_pb2.ResolveTenantRequest(tenant_id=wrong), metadata=a.md(mesh, Role.SERVICE)
            ),
        )
        assert code == grpc.StatusCode.OK

    secrets = secrets_of(mesh, rejected_key)
    for what, text in a.texts:
        for name, secret in secrets.items():
            assert secret not in text, f"{name} in the answer to {what}"
        assert private not in text, f"the victim's data in the answer to {what}"
        for token in a.tokens:
            assert token not in text, f"a bearer token echoed in the answer to {what}"

    logs = mesh.logs()
    assert logs["llm.log"] and logs["storage.log"] and logs["envoy-access.log"]
    for log_name, text in logs.items():
        for name, secret in secrets.items():
            assert secret not in text, f"{name} in {log_name}"
        assert private not in text, f"tenant data in {log_name}"
        for token in a.tokens:
            assert token not in text, f"a bearer token in {log_name}"
