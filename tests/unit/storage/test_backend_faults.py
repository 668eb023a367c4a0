"""A fault stays where it happens: one tenant's backend breaks, that tenant fails fast, the
others do not notice.

StorageService runs for real (in-process grpc.aio server). Two tenants share one real backend,
each with its own resources: items on the machine's PostgreSQL (own schema) or objects on a moto
S3 server (own bucket; aiobotocore with its 60 s read timeout and the mesh's 4-attempt retries).
The "sick" tenant reaches the backend through a TCP fault proxy (tests/fault_proxy.py), the
"well" tenant directly. The drill, per backend and fault:

- black-hole: the sick tenant's calls end with DEADLINE_EXCEEDED at their deadline (not the
  driver's 5 s connect timeout or 30 s command timeout), the well tenant's stay fast meanwhile;
- after `breaker_failure_threshold` failures the breaker opens: UNAVAILABLE
  (BACKEND_CIRCUIT_OPEN) with RetryInfo, far faster than the deadline, without touching the
  backend;
- healed: after the cool-down one probe goes through and the tenant works again;
- refuse: UNAVAILABLE within the deadline; slow: DEADLINE_EXCEEDED within the deadline.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest
from google.api import httpbody_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from makoto.storage.v1 import items_pb2, objects_pb2, storage_service_pb2_grpc
from makoto.tenant.v1 import tenant_pb2

from services.common.breaker import breakers
from services.common.identity import Role
from services.storage.connections import breaker_key
from services.storage.server import build
from services.storage.tenants import StaticTenantResolver
from tests.contract.emulators import Emulator, StaticSecrets, moto_server  # noqa: F401
from tests.contract.item_emulators import item_postgres_dsn, unique_tenant  # noqa: F401
from tests.fault_proxy import FaultProxy, Mode, fault_proxy
from tests.support import bearer, direct_channel, make_settings, running_server
from tests.unit.storage.conftest import MemoryRecorder

DEADLINE = 1.0  # the client's grpc-timeout in these drills
SLACK = 0.75  # scheduling slack on a shared 2-core box: "within the deadline" means < DEADLINE + SLACK
THRESHOLD = 3
COOLDOWN = 1.5
HEALTHY_BOUND = 1.0  # a generous bound for the well tenant's calls, not a benchmark


def _via(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    netloc = f"{parts.username}@127.0.0.1:{port}" if parts.username else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


S3_SECRET = "local://faults-s3"


def _s3_binding(endpoint: str, tenant: str) -> tenant_pb2.TenantBindings:
    return tenant_pb2.TenantBindings(
        object_store=tenant_pb2.ObjectStoreBinding(
            backend=tenant_pb2.OBJECT_BACKEND_S3,
            endpoint=endpoint,
            region="us-east-1",
            bucket=f"{tenant}-faults",
            path_style=True,
            credentials_secret_ref=S3_SECRET,
            options={"auto_provision": "true"},
        )
    )


def _pg_binding(dsn: str) -> tenant_pb2.TenantBindings:
    return tenant_pb2.TenantBindings(
        item_store=tenant_pb2.ItemStoreBinding(
            backend=tenant_pb2.ITEM_BACKEND_POSTGRES,
            endpoint=dsn,
            options={"auto_provision": "true", "pool_max_size": "3"},
        )
    )


@dataclass
class Drill:
    proxy: FaultProxy
    stub: storage_service_pb2_grpc.StorageServiceStub
    sick: str
    well: str
    md: dict[str, tuple[tuple[str, str], ...]]
    kind: str  # "items" (PostgreSQL) or "objects" (S3)

    async def get(self, tenant: str, timeout: float = DEADLINE) -> tuple[grpc.StatusCode, float, object]:
        """One read of the tenant's backend; (code, seconds taken, error or None)."""
        started = time.monotonic()
        try:
            if self.kind == "items":
                await self.stub.GetItem(
                    items_pb2.GetItemRequest(
                        tenant_id=tenant, collection="c", partition_key="p", sort_key="s"
                    ),
                    metadata=self.md[tenant],
                    timeout=timeout,
                )
            else:
                await self.stub.GetObjectMetadata(
                    objects_pb2.GetObjectMetadataRequest(tenant_id=tenant, key="a.txt"),
                    metadata=self.md[tenant],
                    timeout=timeout,
                )
        except grpc.aio.AioRpcError as err:
            return err.code(), time.monotonic() - started, err
        return grpc.StatusCode.OK, time.monotonic() - started, None

    async def put(self, tenant: str) -> None:
        if self.kind == "objects":
            await self.stub.PutObjectContent(
                objects_pb2.PutObjectContentRequest(
                    tenant_id=tenant,
                    key="a.txt",
                    content=httpbody_pb2.HttpBody(content_type="text/plain", data=b"hello"),
                ),
                metadata=self.md[tenant],
                timeout=10,
            )
            return
        await self.stub.PutItem(
            items_pb2.PutItemRequest(
                tenant_id=tenant,
                item=items_pb2.Item(
                    collection="c",
                    partition_key="p",
                    sort_key="s",
                    attributes={"v": items_pb2.AttributeValue(string_value="x")},
                ),
            ),
            metadata=self.md[tenant],
            timeout=10,
        )

    async def well_latencies_while(self, task: asyncio.Future[object]) -> list[float]:
        """Drive the well tenant while `task` (the sick tenant's calls) runs; its latencies."""
        seen: list[float] = []
        while not task.done():
            code, took, _ = await self.get(self.well, timeout=5)
            assert code is grpc.StatusCode.OK
            seen.append(took)
            await asyncio.sleep(0.05)
        return seen


def _retry_delay(err: object) -> float | None:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToNanoseconds() / 1e9
    return None


def _reason(err: object) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


@pytest.fixture(params=["items", "objects"], ids=["postgres-items", "s3-objects"])
async def drill(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    item_postgres_dsn: str,  # noqa: F811
    moto_server: Emulator,  # noqa: F811
) -> AsyncIterator[Drill]:
    kind: str = request.param
    sick, well = unique_tenant("sick"), unique_tenant("well")
    dsn = item_postgres_dsn
    target = urlsplit(dsn if kind == "items" else moto_server.endpoint)
    async with fault_proxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        if kind == "items":
            bindings = {sick: _pg_binding(_via(dsn, proxy.port)), well: _pg_binding(dsn)}
        else:
            bindings = {
                sick: _s3_binding(f"http://127.0.0.1:{proxy.port}", sick),
                well: _s3_binding(moto_server.endpoint, well),
            }
        resolver = StaticTenantResolver(bindings)
        settings = make_settings(
            tmp_path_factory.mktemp("faults") / "home",
            breaker_failure_threshold=THRESHOLD,
            breaker_cooldown_seconds=COOLDOWN,
        )
        secrets = StaticSecrets({S3_SECRET: "makoto-test:makoto-test-secret"})
        server_build = functools.partial(build, recorder=MemoryRecorder(), resolver=resolver, secrets=secrets)
        async with running_server(server_build, settings):
            async with direct_channel(settings.address("storage")) as channel:
                stub = storage_service_pb2_grpc.StorageServiceStub(channel)
                md = {t: bearer(settings, Role.MEMBER, t) for t in (sick, well)}
                d = Drill(proxy, stub, sick, well, md, kind)
                await d.put(sick)
                await d.put(well)
                yield d
        breakers.reset()


async def _until_open(d: Drill) -> list[tuple[grpc.StatusCode, float]]:
    """Call as the sick tenant until the breaker answers; every answer before that is recorded."""
    seen: list[tuple[grpc.StatusCode, float]] = []
    for _ in range(THRESHOLD + 2):
        code, took, err = await d.get(d.sick)
        if code is grpc.StatusCode.UNAVAILABLE and _reason(err) == "BACKEND_CIRCUIT_OPEN":
            return seen
        seen.append((code, took))
    raise AssertionError(f"breaker never opened: {seen}")


async def _heals(d: Drill) -> None:
    await d.proxy.set_mode(Mode.PASS)
    await asyncio.sleep(COOLDOWN + 0.1)
    code, _, err = await d.get(d.sick, timeout=5)
    assert code is grpc.StatusCode.OK, err  # the half-open probe went through and closed it
    for _ in range(3):
        code, _, err = await d.get(d.sick, timeout=5)
        assert code is grpc.StatusCode.OK, err


async def test_black_holed_backend_times_out_opens_the_breaker_and_recovers(drill: Drill) -> None:
    d = drill
    await d.proxy.set_mode(Mode.BLACKHOLE)

    sick_calls = asyncio.ensure_future(_until_open(d))
    well = await d.well_latencies_while(sick_calls)
    failures = await sick_calls

    assert len(failures) >= THRESHOLD, failures
    for code, took in failures:
        assert code is grpc.StatusCode.DEADLINE_EXCEEDED, failures
        assert took < DEADLINE + SLACK, failures
    assert well and max(well) < HEALTHY_BOUND, well

    # Open: answered at once with UNAVAILABLE + RetryInfo, the backend is not even dialled.
    dialled = d.proxy.accepted
    started = time.monotonic()
    code, took, err = await d.get(d.sick)
    assert code is grpc.StatusCode.UNAVAILABLE and _reason(err) == "BACKEND_CIRCUIT_OPEN"
    assert took < DEADLINE / 4, took
    delay = _retry_delay(err)
    assert delay is not None and 0 < delay <= COOLDOWN
    assert d.proxy.accepted == dialled
    assert time.monotonic() - started < DEADLINE
    # Drill numbers for the report (shown with `pytest -s`).
    print(
        f"\ndrill {d.kind} black-hole: sick calls {[round(t, 3) for _, t in failures]} s,"
        f" breaker-open answer {took * 1000:.1f} ms, well tenant max {max(well) * 1000:.1f} ms"
        f" over {len(well)} calls"
    )

    await _heals(d)


async def test_refused_backend_answers_unavailable_then_fails_fast(drill: Drill) -> None:
    d = drill
    await d.proxy.set_mode(Mode.REFUSE)
    failures = await _until_open(d)
    assert len(failures) >= THRESHOLD, failures
    for code, took in failures:
        assert code is grpc.StatusCode.UNAVAILABLE, failures
        assert took < DEADLINE + SLACK, failures
    code, took, _ = await d.get(d.well)
    assert code is grpc.StatusCode.OK and took < HEALTHY_BOUND
    await _heals(d)


async def test_slow_backend_answers_deadline_exceeded_within_the_deadline(drill: Drill) -> None:
    d = drill
    d.proxy.delay = 2 * DEADLINE  # every packet later than the whole call may take
    await d.proxy.set_mode(Mode.SLOW)
    code, took, _ = await d.get(d.sick)
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert took < DEADLINE + SLACK
    code, took, _ = await d.get(d.well)
    assert code is grpc.StatusCode.OK and took < HEALTHY_BOUND
    await _heals(d)


def test_breakers_are_per_tenant_and_endpoint_and_skip_embedded_backends() -> None:
    pg = _pg_binding("postgresql://makoto@db.example:5432/items?sslmode=require").item_store
    key, label = breaker_key("acme", "item_store", pg) or ("", "")
    other, _ = breaker_key("globex", "item_store", pg) or ("", "")
    assert key != other  # one tenant cannot trip another's breaker
    assert "db.example:5432" in label and "makoto@" not in label and "sslmode" not in label
    s3 = _s3_binding("https://s3.example:9000", "acme").object_store
    assert breaker_key("acme", "object_store", s3) is not None
    local = tenant_pb2.ItemStoreBinding(backend=tenant_pb2.ITEM_BACKEND_SQLITE)
    assert breaker_key("acme", "item_store", local) is None
    disk = tenant_pb2.ObjectStoreBinding(backend=tenant_pb2.OBJECT_BACKEND_LOCAL)
    assert breaker_key("acme", "object_store", disk) is None
