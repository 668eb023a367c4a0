"""`custom:features` is enforced per method (issue 9, item 8): the access option's `feature`
(chat, embeddings, image_generation) must be listed by a token that carries the claim;
PERMISSION_DENIED with reason FEATURE_NOT_ENABLED otherwise, identically through Envoy's gRPC and
REST, the OpenAI-compatible /v1 surface, and LLMService's own port. A token without the claim is
not narrowed. Refused calls reach no provider and bill nothing."""

from __future__ import annotations

import grpc
import httpx
import pytest
from makoto.llm.v1 import llm_pb2

from services.common.dev_issuer import mint_token
from services.common.identity import Role
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import (
    API,
    create_tenant,
    error_info,
    stubs,
    wait_for_method,
)

pytestmark = pytest.mark.e2e

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


@pytest.fixture(scope="module")
def tenant(mesh: RunningMesh) -> str:
    return create_tenant(mesh, "sec-feat")


def _md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _grpc_chat(mesh: RunningMesh, target: str, tenant: str, token: str) -> grpc.aio.AioRpcError | None:
    async with mesh.channel(target) as channel:
        request = llm_pb2.CreateChatCompletionRequest(
            tenant_id=tenant, model="chat", messages=[llm_pb2.ChatMessage(role="user", content="hi")]
        )
        try:
            await stubs(channel).llm.CreateChatCompletion(request, metadata=_md(token), timeout=30)
        except grpc.aio.AioRpcError as err:
            return err
    return None


async def test_features_claim_narrows_methods_on_every_surface(mesh: RunningMesh, tenant: str) -> None:
    embeddings_only = mint_token(mesh.settings, role=Role.MEMBER, tenant_id=tenant, features=["embeddings"])
    nothing = mint_token(mesh.settings, role=Role.MEMBER, tenant_id=tenant, features=[])
    unclaimed = mint_token(mesh.settings, role=Role.MEMBER, tenant_id=tenant)
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=60) as http:
        for token in (embeddings_only, nothing):
            headers = {"authorization": f"Bearer {token}"}
            r = await http.post(f"{API}/tenants/{tenant}/chat/completions", json=CHAT, headers=headers)
            assert r.status_code == 403, r.text
            assert r.json()["details"][0]["reason"] == "FEATURE_NOT_ENABLED", r.text
            r = await http.post("/v1/chat/completions", json=CHAT, headers=headers)
            assert r.status_code == 403, r.text
            r = await http.post(
                f"{API}/tenants/{tenant}/images:generate", json={"prompt": "a cat"}, headers=headers
            )
            assert r.status_code == 403, r.text
            for target in (mesh.grpc_target, mesh.address("llm")):
                err = await _grpc_chat(mesh, target, tenant, token)
                assert err is not None and err.code() == grpc.StatusCode.PERMISSION_DENIED, err
                assert error_info(err).reason == "FEATURE_NOT_ENABLED"
        # The listed feature works, on /v1 and on REST; an unlisted one stays refused.
        emb = {"model": "embedding", "input": ["one"]}
        r = await http.post(
            "/v1/embeddings", json=emb, headers={"authorization": f"Bearer {embeddings_only}"}
        )
        assert r.status_code == 200, r.text
        r = await http.post("/v1/embeddings", json=emb, headers={"authorization": f"Bearer {nothing}"})
        assert r.status_code == 403, r.text
        # No claim: not narrowed (the tenant's plan decides).
        r = await http.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {unclaimed}"}
        )
        assert r.status_code == 200, r.text
        # Methods without a feature (ListModels) are callable with any features claim.
        r = await http.get(f"{API}/tenants/{tenant}/models", headers={"authorization": f"Bearer {nothing}"})
        assert r.status_code == 200, r.text
    usage = await wait_for_method(mesh, tenant, "ListModels")
    # One chat (the unclaimed token's), one embeddings call: the refused ones billed nothing.
    assert usage.get("CreateChatCompletion") == 1, usage
    assert usage.get("CreateEmbeddings") == 1, usage
    assert "GenerateImage" not in usage and "StreamChatCompletion" not in usage, usage
