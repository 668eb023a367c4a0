"""api_calls carry the status the client really got: a call cancelled by its client, one whose
deadline passed, and one the server cut at the end of its shutdown grace are never recorded OK."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from makoto.storage.v1 import objects_pb2, storage_service_pb2_grpc

from services.common.config import MeshSettings
from services.common.identity import Role
from services.common.server import Registration, ServerSpec, run_server
from tests.support import bearer, direct_channel, make_settings
from tests.unit.common.test_interceptor import Recorder, Servicer, get
from tests.unit.common.test_interceptor import server as server  # the fixture


async def _events_with(recorder: Recorder, count: int) -> list[dict[str, Any]]:
    """The handler's finally runs after the client saw its end: wait (bounded) for the record."""
    for _ in range(200):
        if len(recorder.events) >= count:
            break
        await asyncio.sleep(0.02)
    return recorder.events


async def test_deadline_exceeded_is_recorded_as_such(server: Any, settings: MeshSettings) -> None:
    stub, recorder = server
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetItem(get(sort_key="slow"), metadata=bearer(settings, Role.MEMBER, "acme"), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    events = await _events_with(recorder, 1)
    assert [e["status"] for e in events] == ["DEADLINE_EXCEEDED"]


async def test_client_cancel_is_recorded_cancelled(server: Any, settings: MeshSettings) -> None:
    stub, recorder = server
    call = stub.GetItem(get(sort_key="slow"), metadata=bearer(settings, Role.MEMBER, "acme"))
    await asyncio.sleep(0.3)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    stream = stub.DownloadObject(
        objects_pb2.DownloadObjectRequest(tenant_id="acme", key="slow"),
        metadata=bearer(settings, Role.MEMBER, "acme"),
    )
    first = await stream.read()
    assert first.chunk == b"one"
    stream.cancel()
    events = await _events_with(recorder, 2)
    assert sorted((e["method"], e["status"]) for e in events) == [
        ("DownloadObject", "CANCELLED"),
        ("GetItem", "CANCELLED"),
    ]
    assert all("ended" not in e for e in events)


async def test_shutdown_cut_is_recorded_unavailable(tmp_path: Any) -> None:
    settings = make_settings(tmp_path / "home", shutdown_grace_seconds=0.5)
    recorder = Recorder()
    spec = ServerSpec(
        name="storage",  # the server presents StorageService's mTLS certificate
        port=settings.storage_port,
        registrations=[
            Registration(
                storage_service_pb2_grpc.add_StorageServiceServicer_to_server,
                Servicer(),
                "makoto.storage.v1.StorageService",
            )
        ],
        recorder=recorder,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_server(spec, settings, stop_event=stop))
    async with direct_channel(settings.address("storage")) as channel:
        await channel.channel_ready()
        stub = storage_service_pb2_grpc.StorageServiceStub(channel)
        md = bearer(settings, Role.MEMBER, "acme")
        await stub.GetItem(get(), metadata=md)
        stream = stub.DownloadObject(
            objects_pb2.DownloadObjectRequest(tenant_id="acme", key="slow"), metadata=md
        )
        assert (await stream.read()).chunk == b"one"
        stop.set()
        with pytest.raises(grpc.aio.AioRpcError):
            await stream.read()
    await asyncio.wait_for(task, 30)
    # Recorded before run_server returned (the recorder closes last).
    assert sorted((e["method"], e["status"], e.get("ended")) for e in recorder.events) == [
        ("DownloadObject", "UNAVAILABLE", "shutdown"),
        ("GetItem", "OK", None),
    ]
