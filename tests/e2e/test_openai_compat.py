"""The OpenAI-compatible API through Envoy, driven by the `openai` SDK itself (base_url = the
mesh's /v1, api_key = a platform token): chat, stream, embeddings, models, a 429, a refused
cross-tenant attempt, and the usage it meters."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import openai
import pytest

from services.common.identity import Role
from tests.mesh_fixture import RunningMesh
from tests.security.attacks import BAD_TOKEN_KINDS, bad_token
from tests.support import direct_ssl, mint_token

pytestmark = pytest.mark.e2e

API = "/api/v1"


def new_tenant_id() -> str:
    return f"oai-{uuid.uuid4().hex[:10]}"


async def create_tenant(mesh: RunningMesh, tenant: str, llm: dict[str, Any] | None = None) -> None:
    body: dict[str, Any] = {"tenantId": tenant, "displayName": tenant}
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as client:
        admin = mesh.headers(Role.PLATFORM_ADMIN)
        r = await client.post(f"{API}/admin/tenants", json=body, headers=admin)
        assert r.status_code == 200, r.text
        if llm is not None:
            bindings = r.json()["bindings"]
            bindings["llm"].update(llm)
            r = await client.patch(
                f"{API}/admin/tenants/{tenant}",
                json={"bindings": bindings},
                params={"updateMask": "bindings"},
                headers=admin,
            )
            assert r.status_code == 200, r.text


def sdk(mesh: RunningMesh, tenant: str, **kwargs: Any) -> openai.AsyncOpenAI:
    token = mint_token(mesh.settings, role=Role.MEMBER, tenant_id=tenant)
    return openai.AsyncOpenAI(base_url=f"{mesh.base_url}/v1", api_key=token, max_retries=0, **kwargs)


@pytest.fixture(scope="module")
async def tenant(mesh: RunningMesh) -> str:
    tenant = new_tenant_id()
    await create_tenant(mesh, tenant)
    return tenant


async def test_chat_stream_embeddings_models_with_the_openai_sdk(mesh: RunningMesh, tenant: str) -> None:
    async with sdk(mesh, tenant) as client:
        answer = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "Say hello to the gateway"}], max_tokens=40
        )
        assert answer.object == "chat.completion"
        assert answer.model == "sim-chat"
        assert answer.choices[0].message.role == "assistant"
        assert answer.choices[0].message.content
        assert answer.usage is not None and answer.usage.prompt_tokens > 0
        assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens

        stream = await client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "Stream a few words"}],
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=30,
        )
        texts: list[str] = []
        usage = None
        async for chunk in stream:
            assert chunk.object == "chat.completion.chunk"
            for choice in chunk.choices:
                texts.append(choice.delta.content or "")
            usage = chunk.usage or usage
        assert "".join(texts)
        assert usage is not None and usage.completion_tokens > 0

        vectors = await client.embeddings.create(model="embedding", input=["one", "two words"])
        assert [d.index for d in vectors.data] == [0, 1]
        assert len(vectors.data[0].embedding) > 8
        assert all(isinstance(x, float) for x in vectors.data[0].embedding)
        floats = await client.embeddings.create(model="embedding", input="one", encoding_format="float")
        # The SDK's default (base64) and floats carry the same numbers.
        assert floats.data[0].embedding == pytest.approx(vectors.data[0].embedding, rel=1e-6)

        listed = {m.id async for m in client.models.list()}
        assert {"chat", "sim-chat", "embedding"} <= listed


async def test_stream_ends_with_done_and_errors_are_openai_shaped(mesh: RunningMesh, tenant: str) -> None:
    token = mint_token(mesh.settings, role=Role.MEMBER, tenant_id=tenant)
    headers = {"authorization": f"Bearer {token}"}
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi there"}], "stream": True}
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as client:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = [line async for line in r.aiter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        first = json.loads(lines[0].removeprefix("data: "))
        assert first["choices"][0]["delta"]["role"] == "assistant"
        # No usage chunk unless asked for (as OpenAI does).
        assert all("usage" not in json.loads(x.removeprefix("data: ")) for x in lines[:-1])

        r = await client.post("/v1/chat/completions", json={"model": "chat", "messages": []}, headers=headers)
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert r.json()["error"]["param"] == "messages"
        r = await client.post(
            "/v1/chat/completions",
            json={**body, "stream": False, "tools": [{"type": "function"}]},
            headers=headers,
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "tools"
        r = await client.post("/v1/chat/completions", content=b"{not json", headers=headers)
        assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]


async def test_rate_limit_answers_429_with_retry_after(mesh: RunningMesh) -> None:
    tenant = new_tenant_id()
    await create_tenant(mesh, tenant, {"rpmLimit": 1})
    async with sdk(mesh, tenant) as client:
        messages = [{"role": "user", "content": "one"}]
        await client.chat.completions.create(model="chat", messages=messages)
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="chat", messages=messages)
    error = caught.value
    assert error.status_code == 429
    assert int(error.response.headers["retry-after"]) >= 1
    assert error.code == "llm_rate_limited"


async def test_cross_tenant_and_bad_tokens_are_refused(mesh: RunningMesh, tenant: str) -> None:
    other = new_tenant_id()
    await create_tenant(mesh, other)
    messages = [{"role": "user", "content": "whose budget is this"}]
    # Naming another tenant through the SDK's organization: Envoy refuses it.
    async with sdk(mesh, tenant, organization=other) as client:
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="chat", messages=messages)
    # ... and so does the service itself, reached directly (bypassing Envoy).
    direct = f"https://{mesh.settings.host}:{mesh.settings.llm_openai_port}/v1"
    token = mint_token(mesh.settings, role=Role.MEMBER, tenant_id=tenant)
    async with openai.AsyncOpenAI(
        base_url=direct,
        api_key=token,
        organization=other,
        max_retries=0,
        http_client=httpx.AsyncClient(verify=direct_ssl()),
    ) as client:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await client.chat.completions.create(model="chat", messages=messages)
        assert caught.value.body["type"] == "permission_error"  # type: ignore[index]
    async with openai.AsyncOpenAI(
        base_url=direct,
        api_key="not-a-jwt",
        max_retries=0,
        http_client=httpx.AsyncClient(verify=direct_ssl()),
    ) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    async with openai.AsyncOpenAI(base_url=f"{mesh.base_url}/v1", api_key="not-a-jwt", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            await c.models.list()


async def test_openai_calls_are_metered_like_grpc_ones(mesh: RunningMesh) -> None:
    tenant = new_tenant_id()
    await create_tenant(mesh, tenant)
    async with sdk(mesh, tenant) as client:
        answer = await client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "count me"}]
        )
    assert answer.usage is not None
    admin = mesh.headers(Role.PLATFORM_ADMIN)
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as http:
        for _ in range(100):  # usage travels through the spool: wait for it
            r = await http.get(
                f"{API}/tenants/{tenant}/usage", params={"meter": "llm_prompt_tokens"}, headers=admin
            )
            assert r.status_code == 200, r.text
            total = sum(int(row.get("value", 0)) for row in r.json().get("rows", []))
            if total:
                break
            await asyncio.sleep(0.1)
    assert total == answer.usage.prompt_tokens


async def test_bad_tokens_are_401_on_the_service_port_itself(mesh: RunningMesh, tenant: str) -> None:
    """Bypassing Envoy: the OpenAI listener refuses every kind of bad token, even one claiming
    platform-admin, before any work (no usage left behind is checked by the gRPC twin test)."""
    direct = f"https://{mesh.settings.host}:{mesh.settings.llm_openai_port}"
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=direct, timeout=30, verify=direct_ssl()) as client:
        for kind in BAD_TOKEN_KINDS:
            for role in (Role.MEMBER, Role.PLATFORM_ADMIN):
                token = bad_token(mesh, kind, role, tenant)
                headers = {"authorization": f"Bearer {token}"} if token is not None else {}
                r = await client.post("/v1/chat/completions", json=body, headers=headers)
                assert r.status_code == 401, (kind, role, r.text)
                assert r.json()["error"]["type"] == "authentication_error"
