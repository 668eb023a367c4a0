"""A test-only upstream for Envoy's own tests: the four public services (plus the internal
TenantDirectoryService) as small "spy" servicers on the real server core (run_server, so the JWT
is verified in the service too), recording every call they see: method, metadata and request.

Envoy runs as a real subprocess with the config `makoto up` would render for these ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
from google.api import httpbody_pb2
from google.protobuf.message import Message
from makoto.llm.v1 import llm_pb2, llm_pb2_grpc
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc

# storage_service_pb2 registers the service's descriptor (its _grpc module does not): the
# server's access policies are read from it, also when no other test imported it first.
from makoto.storage.v1 import items_pb2, objects_pb2, storage_service_pb2, storage_service_pb2_grpc
from makoto.tenant.v1 import directory_pb2, directory_pb2_grpc, tenant_pb2, tenant_pb2_grpc

from services.common.config import MeshSettings
from services.common.errors import NotFound, Unavailable
from services.common.server import Registration, ServerSpec, run_server
from services.mesh.envoy_config import write_config
from services.mesh.launcher import envoy_spec
from services.mesh.processes import Child

T_ = TypeVar("T_")


@dataclass
class Call:
    method: str
    metadata: dict[str, str]
    request: Message


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)

    def add(self, method: str, context: grpc.aio.ServicerContext, request: Message) -> None:
        md = {k: (v if isinstance(v, str) else v.decode()) for k, v in context.invocation_metadata() or ()}
        # grpc-timeout never shows up as metadata (gRPC consumes it): record the deadline it set.
        remaining = context.time_remaining()
        if remaining is not None:
            md["x-spy-time-remaining"] = f"{remaining:.3f}"
        self.calls.append(Call(method, md, request))

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    def clear(self) -> None:
        self.calls.clear()


class TenantSpy(tenant_pb2_grpc.TenantServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def GetTenant(self, request: Any, context: Any) -> Any:
        self.rec.add("GetTenant", context, request)
        return tenant_pb2.Tenant(
            tenant_id=request.tenant_id, display_name="spy", state=tenant_pb2.TENANT_STATE_ACTIVE
        )

    async def CreateTenant(self, request: Any, context: Any) -> Any:
        self.rec.add("CreateTenant", context, request)
        return request.tenant

    async def ListTenants(self, request: Any, context: Any) -> Any:
        self.rec.add("ListTenants", context, request)
        return tenant_pb2.ListTenantsResponse(tenants=[tenant_pb2.Tenant(tenant_id="acme")])

    async def ListUsers(self, request: Any, context: Any) -> Any:
        self.rec.add("ListUsers", context, request)
        return tenant_pb2.ListUsersResponse()


class DirectorySpy(directory_pb2_grpc.TenantDirectoryServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def ResolveTenant(self, request: Any, context: Any) -> Any:
        self.rec.add("ResolveTenant", context, request)
        return directory_pb2.ResolveTenantResponse(tenant_id=request.tenant_id)


class StorageSpy(storage_service_pb2_grpc.StorageServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.objects: dict[tuple[str, str], tuple[str, bytes]] = {}

    def _meta(self, key: str, content_type: str, data: bytes) -> objects_pb2.ObjectMetadata:
        return objects_pb2.ObjectMetadata(
            key=key, size_bytes=len(data), content_type=content_type, sha256=hashlib.sha256(data).hexdigest()
        )

    async def GetItem(self, request: Any, context: Any) -> Any:
        self.rec.add("GetItem", context, request)
        if request.sort_key.startswith("hang"):
            # A backend that never answers: only a deadline ends this call.
            await asyncio.sleep(3600)
        return items_pb2.Item(
            collection=request.collection,
            partition_key=request.partition_key,
            sort_key=request.sort_key,
            etag="e1",
        )

    async def PutItem(self, request: Any, context: Any) -> Any:
        self.rec.add("PutItem", context, request)
        item = items_pb2.Item()
        item.CopyFrom(request.item)
        item.etag = "e1"
        return item

    async def BatchGetItems(self, request: Any, context: Any) -> Any:
        self.rec.add("BatchGetItems", context, request)
        return items_pb2.BatchGetItemsResponse(missing_keys=list(request.keys))

    async def PutObjectContent(self, request: Any, context: Any) -> Any:
        self.rec.add("PutObjectContent", context, request)
        data = bytes(request.content.data)
        self.objects[(request.tenant_id, request.key)] = (request.content.content_type, data)
        return self._meta(request.key, request.content.content_type, data)

    async def GetObjectContent(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.rec.add("GetObjectContent", context, request)
        if request.key == "fail-midway":
            yield httpbody_pb2.HttpBody(content_type="application/octet-stream", data=b"a" * 70_000)
            await asyncio.sleep(0.05)
            raise Unavailable("backend went away mid-stream")
        found = self.objects.get((request.tenant_id, request.key))
        if found is None:
            raise NotFound(f"object {request.key} not found")
        content_type, data = found
        step = 64 * 1024
        for i in range(0, max(len(data), 1), step):
            yield httpbody_pb2.HttpBody(content_type=content_type, data=data[i : i + step])

    async def UploadObject(self, request_iterator: Any, context: Any) -> Any:
        header = None
        chunks: list[bytes] = []
        async for part in request_iterator:
            if part.HasField("header"):
                header = part.header
            else:
                chunks.append(part.chunk)
        assert header is not None
        self.rec.add("UploadObject", context, header)
        data = b"".join(chunks)
        self.objects[(header.tenant_id, header.key)] = (header.content_type, data)
        return self._meta(header.key, header.content_type, data)


class LlmSpy(llm_pb2_grpc.LLMServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def CreateChatCompletion(self, request: Any, context: Any) -> Any:
        self.rec.add("CreateChatCompletion", context, request)
        return llm_pb2.ChatCompletion(id="c1", model="sim-chat", provider="spy")

    async def StreamChatCompletion(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self.rec.add("StreamChatCompletion", context, request)
        for i, piece in enumerate(["Hel", "lo", "!"]):
            yield llm_pb2.ChatCompletionChunk(id="c1", model="sim-chat", delta=piece)
            if i == 0:
                await asyncio.sleep(0.05)  # really streamed, not one write
        yield llm_pb2.ChatCompletionChunk(
            id="c1",
            model="sim-chat",
            finish_reason="stop",
            usage=llm_pb2.TokenUsage(prompt_tokens=3, completion_tokens=3, total_tokens=6),
        )


class MeteringSpy(metering_pb2_grpc.MeteringServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def RecordUsage(self, request: Any, context: Any) -> Any:
        self.rec.add("RecordUsage", context, request)
        return metering_pb2.RecordUsageResponse(accepted=len(request.events))

    async def QueryUsage(self, request: Any, context: Any) -> Any:
        self.rec.add("QueryUsage", context, request)
        return metering_pb2.QueryUsageResponse(meter=request.meter)

    async def GetInvoice(self, request: Any, context: Any) -> Any:
        self.rec.add("GetInvoice", context, request)
        return metering_pb2.Invoice(tenant_id=request.tenant_id, month=request.month, total="0")

    async def GetPricePlan(self, request: Any, context: Any) -> Any:
        self.rec.add("GetPricePlan", context, request)
        return metering_pb2.PricePlan(plan_id=request.plan_id, currency="USD")


def spec_for(name: str, settings: MeshSettings, rec: Recorder, storage: StorageSpy) -> ServerSpec:
    if name == "tenant":
        return ServerSpec(
            name="tenant",
            port=settings.tenant_port,
            registrations=[
                Registration(
                    tenant_pb2_grpc.add_TenantServiceServicer_to_server,
                    TenantSpy(rec),
                    "makoto.tenant.v1.TenantService",
                ),
                Registration(
                    directory_pb2_grpc.add_TenantDirectoryServiceServicer_to_server,
                    DirectorySpy(rec),
                    "makoto.tenant.v1.TenantDirectoryService",
                ),
            ],
        )
    if name == "storage":
        return ServerSpec(
            name="storage",
            port=settings.storage_port,
            registrations=[
                Registration(
                    storage_service_pb2_grpc.add_StorageServiceServicer_to_server,
                    storage,
                    storage_service_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name,
                )
            ],
        )
    if name == "llm":
        return ServerSpec(
            name="llm",
            port=settings.llm_port,
            registrations=[
                Registration(
                    llm_pb2_grpc.add_LLMServiceServicer_to_server, LlmSpy(rec), "makoto.llm.v1.LLMService"
                )
            ],
        )
    assert name == "metering"
    return ServerSpec(
        name="metering",
        port=settings.metering_port,
        registrations=[
            Registration(
                metering_pb2_grpc.add_MeteringServiceServicer_to_server,
                MeteringSpy(rec),
                "makoto.metering.v1.MeteringService",
            )
        ],
    )


async def _wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.025)


class _LoopThread:
    """An event loop in a background thread: the spy servers keep answering Envoy's health
    checks even while a synchronous test blocks the test's own loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="envoy-spy", daemon=True)
        self._thread.start()

    async def run(self, coro: Coroutine[Any, Any, T_]) -> T_:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class SpyMesh:
    """Spy services (own event loop thread) + a real Envoy subprocess in front of them."""

    NAMES = ("tenant", "storage", "llm", "metering")

    def __init__(self, settings: MeshSettings) -> None:
        self.settings = settings
        self.rec = Recorder()
        self.storage = StorageSpy(self.rec)
        self._servers: dict[str, tuple[asyncio.Event, asyncio.Task[None]]] = {}
        self._thread = _LoopThread()
        self.envoy: Child | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.envoy_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.settings.host}:{self.settings.envoy_port}"

    @property
    def access_log(self) -> Path:
        return self.settings.home / "logs" / "envoy-access.log"

    async def _start_in_thread(self, name: str) -> None:
        stop = asyncio.Event()
        spec = spec_for(name, self.settings, self.rec, self.storage)
        task = asyncio.create_task(run_server(spec, self.settings, stop_event=stop))
        self._servers[name] = (stop, task)
        await _wait_port(self.settings.host, spec.port)

    async def _stop_in_thread(self, name: str) -> None:
        stop, task = self._servers.pop(name)
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    async def start_service(self, name: str) -> None:
        await self._thread.run(self._start_in_thread(name))

    async def stop_service(self, name: str) -> None:
        await self._thread.run(self._stop_in_thread(name))

    async def access_log_entries(self, user_agent: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Access-log lines of requests sent with this User-Agent (Envoy flushes the file ~1 s)."""
        import json

        deadline = time.monotonic() + timeout
        while True:
            text = self.access_log.read_text() if self.access_log.exists() else ""
            found = [json.loads(line) for line in text.splitlines() if user_agent in line]
            if found or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.1)

    async def healthz(self) -> int:
        async with httpx.AsyncClient(timeout=2.0) as client:
            return (await client.get(self.base_url + "/healthz")).status_code

    async def wait_healthz(self, want: int, timeout: float = 15.0) -> float:
        """Seconds until /healthz answered `want`."""
        started = time.monotonic()
        while True:
            try:
                if await self.healthz() == want:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"/healthz did not become {want} within {timeout}s")
            await asyncio.sleep(0.1)

    async def start(self) -> None:
        for name in self.NAMES:
            await self.start_service(name)
        config = write_config(self.settings)
        self.envoy = await Child.start(envoy_spec(self.settings, config, self.settings.home / "logs"))
        try:
            await self.wait_healthz(200, timeout=30)
        except TimeoutError:
            raise RuntimeError("envoy did not become healthy:\n" + self.envoy.log_tail(40)) from None

    async def stop(self) -> None:
        if self.envoy is not None:
            await self.envoy.stop(10)
        for name in list(self._servers):
            with contextlib.suppress(Exception):
                await self.stop_service(name)
        self._thread.close()
