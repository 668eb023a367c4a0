"""Envoy refuses what the services refuse (issue 9, item 1), on every port: Envoy's gRPC and REST
(and the OpenAI-compatible /v1) and the services' own ports -- storage's, and (the last two tests)
the tenant, LLM and metering ports, each with a tenant-scoped method of its own.

- Crafted protobuf: the tenant field sent with the wrong wire type ahead of the real one, and an
  UploadObjectRequest holding two headers (acme, then globex). Envoy cannot parse protobuf
  strictly; the service is the authority and refuses both (INVALID_ARGUMENT,
  AMBIGUOUS_TENANT_FIELD), and Envoy's access log records only the tenant the service decided.
- Tokens: no exp, iat or nbf in the future, `Basic x Bearer <jwt>`, and platform-admin or
  service tokens carrying a tenant claim on a tenant-only route: refused at Envoy (401/403) and
  at the service (UNAUTHENTICATED/PERMISSION_DENIED).

Each case also checks that nothing reached the store.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import jwt
import pytest
from google.protobuf.message import Message
from makoto.llm.v1 import llm_pb2
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.storage.v1 import items_pb2, objects_pb2
from makoto.tenant.v1 import tenant_pb2, tenant_pb2_grpc

from services.common.dev_issuer import mint_token
from services.common.identity import Role, service_audience
from tests.e2e.conftest import RunningMesh
from tests.security.attacks import (
    API,
    claims,
    create_tenant,
    error_info,
    items_on_disk,
    object_keys_on_disk,
    usage_by_method,
    wait_for_method,
)
from tests.support import client_stream

pytestmark = pytest.mark.e2e

INVALID = grpc.StatusCode.INVALID_ARGUMENT
PUT_ITEM = "/makoto.storage.v1.StorageService/PutItem"
UPLOAD = "/makoto.storage.v1.StorageService/UploadObject"


@pytest.fixture(scope="module")
def acme(mesh: RunningMesh) -> str:
    # Seven characters: with its length byte it fills the eight bytes of a fixed64 exactly, so
    # the decoy below parses cleanly both ways (the "acme" attack, sized for a unique id).
    tenant = f"e{uuid.uuid4().hex[:6]}"
    with httpx.Client(base_url=mesh.base_url, headers=mesh.headers(Role.PLATFORM_ADMIN), timeout=30) as c:
        r = c.post(f"{API}/admin/tenants", json={"tenantId": tenant})
        assert r.status_code == 200, r.text
    return tenant


@pytest.fixture(scope="module")
def globex(mesh: RunningMesh) -> str:
    return create_tenant(mesh, "edge-globex")


def _targets(mesh: RunningMesh) -> dict[str, str]:
    return {"envoy": mesh.grpc_target, "storage-port": mesh.address("storage")}


def _put(tenant: str, sort_key: str) -> items_pb2.PutItemRequest:
    return items_pb2.PutItemRequest(
        tenant_id=tenant,
        item=items_pb2.Item(
            collection="edge",
            partition_key="p",
            sort_key=sort_key,
            attributes={"v": items_pb2.AttributeValue(string_value="x")},
        ),
    )


def _wrong_wire_type(decoy: str, request: items_pb2.PutItemRequest) -> bytes:
    # Field 1 with wire type 1 (fixed64, tag 0x09): eight bytes that a lenient reader takes for a
    # length-prefixed tenant id (Envoy's field extraction did); protobuf keeps them as an unknown
    # field and reads the real tenant_id that follows.
    fixed = bytes([len(decoy)]) + decoy.encode()
    assert len(fixed) == 8
    return b"\x09" + fixed + request.SerializeToString()


def _two_headers(first: str, second: str, key: str) -> bytes:
    one = objects_pb2.UploadObjectRequest(header=objects_pb2.UploadObjectHeader(tenant_id=first, key=key))
    two = objects_pb2.UploadObjectRequest(header=objects_pb2.UploadObjectHeader(tenant_id=second, key=key))
    # Concatenated messages merge: protobuf ends up with the last tenant, a lenient reader the first.
    return one.SerializeToString() + two.SerializeToString()


async def _raw_unary(channel: grpc.aio.Channel, path: str, body: bytes, md: Any) -> grpc.aio.AioRpcError:
    call = channel.unary_unary(path)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(body, metadata=md, timeout=10)
    return caught.value


def _access_lines(mesh: RunningMesh, agent: str) -> list[dict[str, Any]]:
    path = mesh.settings.home / "logs" / "envoy-access.log"
    lines = [json.loads(line) for line in path.read_text().splitlines() if agent in line]
    return lines


async def _wait_access_lines(mesh: RunningMesh, agent: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        lines = _access_lines(mesh, agent)
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        await asyncio.sleep(0.2)


async def test_crafted_tenant_encodings_are_refused_on_every_port(
    mesh: RunningMesh, acme: str, globex: str
) -> None:
    md = mesh.metadata(Role.TENANT_ADMIN, acme)
    for port, target in _targets(mesh).items():
        agent = f"edge-{uuid.uuid4().hex[:10]}"
        async with mesh.channel(target, options=[("grpc.primary_user_agent", agent)]) as ch:
            # Wrong wire type, both ways round: the caller's tenant as the decoy in front of
            # globex, and globex as the decoy in front of the caller's own tenant. Whichever one
            # Envoy's extraction reads, each is refused: by Envoy's tenant check (403) or by the
            # service (400, AMBIGUOUS_TENANT_FIELD); the service's own port always says 400.
            for decoy, real in ((acme, globex), (globex[:7], acme), (acme, acme)):
                payload = _wrong_wire_type(decoy, _put(real, f"ww-{port}-{decoy}-{real}"))
                err = await _raw_unary(ch, PUT_ITEM, payload, md)
                allowed = {INVALID} if port != "envoy" else {INVALID, grpc.StatusCode.PERMISSION_DENIED}
                assert err.code() in allowed, (port, decoy, real, err.code(), err.details())
                if err.code() == INVALID:
                    assert error_info(err).reason == "AMBIGUOUS_TENANT_FIELD"
            # Two headers in one message: acme, then globex.
            upload = ch.stream_unary(UPLOAD)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await client_stream(
                    upload, [_two_headers(acme, globex, f"two-{port}.bin"), b"\x12\x03abc"], md
                )
            code = caught.value.code()
            allowed = {INVALID} if port != "envoy" else {INVALID, grpc.StatusCode.PERMISSION_DENIED}
            assert code in allowed, (port, code, caught.value.details())
            if code == INVALID:
                assert error_info(caught.value).reason == "AMBIGUOUS_TENANT_FIELD"
            # A canonical call of the same caller, for the access log comparison below.
            ok = ch.unary_unary(PUT_ITEM)
            await ok(_put(acme, f"ok-{port}").SerializeToString(), metadata=md, timeout=10)
        if port == "envoy":
            lines = await _wait_access_lines(mesh, agent, 5)
            assert len(lines) == 5, lines
            # Envoy's log names the tenant the service decided: none for the refused calls,
            # the caller's for the good one; never globex.
            for line in lines[:4]:
                assert line["grpc_status"] in ("InvalidArgument", "PermissionDenied"), line
                assert line["tenant_id"] in (None, "-") and line["tenant_id_trailer"] in (None, "-"), line
            # The (acme, acme) decoy passes Envoy whichever occurrence it reads: the service refused it.
            assert any(line["grpc_status"] == "InvalidArgument" for line in lines[:4]), lines
            good = lines[4]
            assert acme in (good["tenant_id"], good["tenant_id_trailer"]), good
            assert globex not in json.dumps(lines)
    # Nothing was written for either tenant but the canonical calls.
    assert items_on_disk(mesh, globex) == {}
    assert {k[2] for k in items_on_disk(mesh, acme)} == {"ok-envoy", "ok-storage-port"}
    assert object_keys_on_disk(mesh, acme) == {}
    assert object_keys_on_disk(mesh, globex) == {}


# -- tokens ----------------------------------------------------------------------------------


def _sign(mesh: RunningMesh, body: dict[str, object]) -> str:
    kid = json.loads(mesh.settings.jwks_path.read_text())["keys"][0]["kid"]
    return jwt.encode(body, mesh.settings.signing_key_path.read_bytes(), "RS256", {"kid": kid})


def _bad_authorizations(mesh: RunningMesh, tenant: str) -> dict[str, str]:
    """Authorization header values that must be refused as UNAUTHENTICATED everywhere."""
    now = int(time.time())
    no_exp = claims(mesh, Role.TENANT_ADMIN, tenant)
    del no_exp["exp"]
    good = mint_token(mesh.settings, role=Role.TENANT_ADMIN, tenant_id=tenant)
    return {
        "no-exp": f"Bearer {_sign(mesh, no_exp)}",
        "iat-in-future": "Bearer "
        + _sign(mesh, claims(mesh, Role.TENANT_ADMIN, tenant, iat=now + 600, exp=now + 1200)),
        "nbf-in-future": "Bearer " + _sign(mesh, claims(mesh, Role.TENANT_ADMIN, tenant, nbf=now + 600)),
        "basic-then-bearer": f"Basic x Bearer {good}",
        "bearer-twice": f"Bearer {good} Bearer {good}",
        "lowercase-scheme": f"bearer {good}",
    }


def _wrong_role_tokens(mesh: RunningMesh, tenant: str) -> dict[str, str]:
    """Valid tokens of roles a tenant-only route does not admit, carrying the tenant's claim."""
    audiences = [mesh.settings.audience, *(service_audience(mesh.settings.audience, s) for s in ("storage",))]
    return {
        "platform-admin+tenant": mint_token(mesh.settings, role=Role.PLATFORM_ADMIN, tenant_id=tenant),
        "service+tenant": mint_token(mesh.settings, role=Role.SERVICE, tenant_id=tenant, audience=audiences),
    }


async def test_token_rules_are_identical_at_envoy_and_in_the_services(mesh: RunningMesh, acme: str) -> None:
    bad = _bad_authorizations(mesh, acme)
    roles = _wrong_role_tokens(mesh, acme)
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30) as http:
        for kind, value in bad.items():
            sort_key = f"tok-{kind}"
            # REST through Envoy
            r = await http.put(
                f"{API}/tenants/{acme}/collections/edge/partitions/p/items/{sort_key}",
                json={"attributes": {"v": {"stringValue": "x"}}},
                headers={"authorization": value},
            )
            assert r.status_code == 401, (kind, r.status_code, r.text)
            # The OpenAI-compatible surface
            r = await http.post(
                "/v1/chat/completions",
                json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": value},
            )
            assert r.status_code == 401, (kind, r.status_code, r.text)
            # gRPC through Envoy and on the service's own port
            for port, target in _targets(mesh).items():
                async with mesh.channel(target) as ch:
                    err = await _raw_unary(
                        ch, PUT_ITEM, _put(acme, sort_key).SerializeToString(), (("authorization", value),)
                    )
                assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (kind, port, err.details())
        for kind, token in roles.items():
            sort_key = f"role-{kind}"
            r = await http.put(
                f"{API}/tenants/{acme}/collections/edge/partitions/p/items/{sort_key}",
                json={"attributes": {"v": {"stringValue": "x"}}},
                headers={"authorization": f"Bearer {token}"},
            )
            assert r.status_code == 403, (kind, r.status_code, r.text)
            r = await http.post(
                "/v1/chat/completions",
                json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
                headers={"authorization": f"Bearer {token}", "OpenAI-Organization": acme},
            )
            assert r.status_code == 403, (kind, r.status_code, r.text)
            for port, target in _targets(mesh).items():
                async with mesh.channel(target) as ch:
                    err = await _raw_unary(
                        ch,
                        PUT_ITEM,
                        _put(acme, sort_key).SerializeToString(),
                        (("authorization", f"Bearer {token}"),),
                    )
                assert err.code() == grpc.StatusCode.PERMISSION_DENIED, (kind, port, err.details())
    keys = {k[2] for k in items_on_disk(mesh, acme)}
    assert not {k for k in keys if k.startswith(("tok-", "role-"))}, keys


# -- the same payloads and tokens on the tenant, LLM and metering services ---------------------

INVITE = "/makoto.tenant.v1.TenantService/InviteUser"
CHAT = "/makoto.llm.v1.LLMService/CreateChatCompletion"
LIST_MODELS = "/makoto.llm.v1.LLMService/ListModels"
GET_LIMITS = "/makoto.metering.v1.MeteringService/GetTenantLimits"
SET_LIMITS = "/makoto.metering.v1.MeteringService/SetTenantLimits"
MARK_LIMIT = 424242  # llm_monthly_tokens no refused SetTenantLimits may leave behind


@dataclass(frozen=True)
class Case:
    """One tenant-scoped method of a service (tenant_id is field 1 of its request)."""

    path: str
    # (tenant, marker) -> the request; the marker makes what a wrongly accepted call wrote findable
    request: Callable[[str, str], Message]
    # the caller's role (tenant-bound roles carry acme's claim)
    role: Role


def _invite(tenant: str, marker: str) -> Message:
    return tenant_pb2.InviteUserRequest(
        tenant_id=tenant,
        user=tenant_pb2.TenantUser(email=f"{marker}@edge.test", role=tenant_pb2.USER_ROLE_MEMBER),
    )


def _chat(tenant: str, marker: str) -> Message:
    return llm_pb2.CreateChatCompletionRequest(
        tenant_id=tenant, model="chat", messages=[llm_pb2.ChatMessage(role="user", content=marker)]
    )


def _get_limits(tenant: str, marker: str) -> Message:
    return metering_pb2.GetTenantLimitsRequest(tenant_id=tenant)


def _set_limits(tenant: str, marker: str) -> Message:
    return metering_pb2.SetTenantLimitsRequest(
        tenant_id=tenant, overrides=metering_pb2.PlanLimits(llm_monthly_tokens=MARK_LIMIT)
    )


# Per service: the methods the crafted payloads are sent to, and a method whose route does not
# admit some role that can carry a tenant claim (with those roles).
CRAFTED: dict[str, list[Case]] = {
    "tenant": [Case(INVITE, _invite, Role.TENANT_ADMIN)],
    "llm": [Case(CHAT, _chat, Role.TENANT_ADMIN)],
    # A tenant-admin's read, and the operator's write (Envoy lets a platform-admin through for
    # any tenant, so only the service's strict reading stands between it and the store).
    "metering": [
        Case(GET_LIMITS, _get_limits, Role.TENANT_ADMIN),
        Case(SET_LIMITS, _set_limits, Role.PLATFORM_ADMIN),
    ],
}
WRONG_ROLE: dict[str, tuple[Case, tuple[Role, ...]]] = {
    "tenant": (Case(INVITE, _invite, Role.TENANT_ADMIN), (Role.MEMBER, Role.SERVICE)),
    "llm": (Case(CHAT, _chat, Role.TENANT_ADMIN), (Role.PLATFORM_ADMIN, Role.SERVICE)),
    "metering": (
        Case(SET_LIMITS, _set_limits, Role.PLATFORM_ADMIN),
        (Role.TENANT_ADMIN, Role.MEMBER, Role.SERVICE),
    ),
}


def _service_targets(mesh: RunningMesh, service: str) -> dict[str, str]:
    return {"envoy": mesh.grpc_target, f"{service}-port": mesh.address(service)}


def _merged(request: Callable[[str, str], Message], first: str, second: str, marker: str) -> bytes:
    # Two serialised requests back to back are one message to protobuf (the last tenant_id wins);
    # a lenient reader takes the first.
    return request(first, marker).SerializeToString() + request(second, marker).SerializeToString()


async def _nothing_changed(
    mesh: RunningMesh, service: str, tenants: tuple[str, str], markers: list[str]
) -> None:
    """What a wrongly accepted call would have left: users invited, LLM calls billed, limits set."""
    operator = mesh.metadata(Role.PLATFORM_ADMIN)
    async with mesh.channel(mesh.grpc_target) as ch:
        if service == "tenant":
            stub = tenant_pb2_grpc.TenantServiceStub(ch)
            for tenant in tenants:
                users = await stub.ListUsers(tenant_pb2.ListUsersRequest(tenant_id=tenant), metadata=operator)
                emails = " ".join(u.email for u in users.users)
                assert not [m for m in markers if m in emails], (tenant, emails)
        elif service == "metering":
            stub_m = metering_pb2_grpc.MeteringServiceStub(ch)
            for tenant in tenants:
                limits = await stub_m.GetTenantLimits(
                    metering_pb2.GetTenantLimitsRequest(tenant_id=tenant), metadata=operator
                )
                assert limits.overrides.llm_monthly_tokens != MARK_LIMIT, (tenant, limits.overrides)
        else:
            # A sentinel ListModels of each tenant: the LLM service's events travel one spool in
            # order, so a chat it had billed before the sentinel would be there by now.
            for tenant in tenants:
                sentinel = ch.unary_unary(LIST_MODELS)
                await sentinel(
                    llm_pb2.ListModelsRequest(tenant_id=tenant).SerializeToString(),
                    metadata=mesh.metadata(Role.TENANT_ADMIN, tenant),
                    timeout=10,
                )
                usage = await wait_for_method(mesh, tenant, "ListModels")
                assert not usage.get("CreateChatCompletion"), (tenant, usage)
                assert not await usage_by_method(mesh, tenant, "llm_prompt_tokens"), tenant


@pytest.mark.parametrize("service", ["tenant", "llm", "metering"])
async def test_crafted_tenant_encodings_are_refused_on_every_service_port(
    mesh: RunningMesh, acme: str, globex: str, service: str
) -> None:
    markers: list[str] = []
    for case in CRAFTED[service]:
        md = mesh.metadata(case.role, acme if case.role != Role.PLATFORM_ADMIN else None)
        for port, target in _service_targets(mesh, service).items():
            async with mesh.channel(target) as ch:
                for decoy, real in ((acme, globex), (globex[:7], acme), (acme, acme)):
                    marker = f"ww{uuid.uuid4().hex[:8]}"
                    markers.append(marker)
                    request = case.request(real, marker)
                    fixed = bytes([len(decoy)]) + decoy.encode()
                    err = await _raw_unary(ch, case.path, b"\x09" + fixed + request.SerializeToString(), md)
                    allowed = {INVALID} if port != "envoy" else {INVALID, grpc.StatusCode.PERMISSION_DENIED}
                    assert err.code() in allowed, (service, case.path, port, decoy, real, err.details())
                    if err.code() == INVALID:
                        assert error_info(err).reason == "AMBIGUOUS_TENANT_FIELD"
                # One message naming two tenants (acme, then globex, and the other way round).
                for first, second in ((acme, globex), (globex, acme)):
                    marker = f"tw{uuid.uuid4().hex[:8]}"
                    markers.append(marker)
                    err = await _raw_unary(ch, case.path, _merged(case.request, first, second, marker), md)
                    allowed = {INVALID} if port != "envoy" else {INVALID, grpc.StatusCode.PERMISSION_DENIED}
                    assert err.code() in allowed, (service, case.path, port, first, err.details())
                    if err.code() == INVALID:
                        assert error_info(err).reason == "AMBIGUOUS_TENANT_FIELD"
    await _nothing_changed(mesh, service, (acme, globex), markers)


@pytest.mark.parametrize("service", ["tenant", "llm", "metering"])
async def test_token_rules_are_identical_on_every_service_port(
    mesh: RunningMesh, acme: str, globex: str, service: str
) -> None:
    markers: list[str] = []
    case, wrong_roles = WRONG_ROLE[service]
    bad = _bad_authorizations(mesh, acme)
    audiences = [mesh.settings.audience, service_audience(mesh.settings.audience, service)]
    for port, target in _service_targets(mesh, service).items():
        async with mesh.channel(target) as ch:
            for kind, value in bad.items():
                marker = f"tk{uuid.uuid4().hex[:8]}"
                markers.append(marker)
                err = await _raw_unary(
                    ch, case.path, case.request(acme, marker).SerializeToString(), (("authorization", value),)
                )
                assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (service, kind, port, err.details())
            for role in wrong_roles:
                marker = f"rl{uuid.uuid4().hex[:8]}"
                markers.append(marker)
                token = mint_token(
                    mesh.settings,
                    role=role,
                    tenant_id=acme,
                    **({"audience": audiences} if role == Role.SERVICE else {}),
                )
                err = await _raw_unary(
                    ch,
                    case.path,
                    case.request(acme, marker).SerializeToString(),
                    (("authorization", f"Bearer {token}"),),
                )
                assert err.code() == grpc.StatusCode.PERMISSION_DENIED, (service, role, port, err.details())
    await _nothing_changed(mesh, service, (acme, globex), markers)
