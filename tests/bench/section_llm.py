"""Section 6 (issue 10): the LLM gateway's cost per call against the same fast mock upstream
called directly, and LiteLLM's proxy side by side.

Paths, each driven by this process: the mock upstream alone (OpenAI HTTP), LLMService over gRPC
directly, the OpenAI-compatible API through Envoy (what an OpenAI SDK user calls), and LiteLLM's
proxy (one worker). Measured: p50 at c=1 (and what each path adds to the upstream alone), req/s
at c=16, time to first token of a 20-chunk stream at c=1, and CPU µs per call of each process
on the way (psutil, over the whole run).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import aiohttp
import httpx
import psutil
from makoto.llm.v1 import llm_pb2, llm_pb2_grpc
from makoto.metering.v1 import metering_pb2, metering_pb2_grpc
from makoto.tenant.v1 import tenant_pb2

from services.common.identity import Role
from tests.bench.harness import Config, Environment, say
from tests.bench.litellm_peer import LiteLLM, running_litellm
from tests.bench.llm_upstream import MODEL, STREAM_CHUNKS
from tests.bench.load import LoadResult, run_fixed
from tests.bench.mesh import BenchMesh
from tests.bench.report import Table, ms, rate, ratio
from tests.bench.tenants import create_tenant, store_secret, tenant_id
from tests.support import direct_channel, free_port

Op = Callable[[int], Awaitable[None]]
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark."}]


@contextlib.contextmanager
def mock_upstream(port: int) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.llm_upstream", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{url}/models", timeout=1)
                break
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def _llm_tenant(mesh: BenchMesh, upstream_v1: str) -> str:
    tid = tenant_id("bench-llm")
    ref = store_secret(mesh, "bench-mock-key", "sk-mock", tid)
    binding = tenant_pb2.LlmBinding(
        provider=tenant_pb2.LLM_PROVIDER_OPENAI,
        endpoint=upstream_v1,
        chat_model=MODEL,
        embedding_model="mock-embed",
        api_key_secret_ref=ref,
    )
    tid = await create_tenant(mesh, "bench-llm", tid=tid, llm=binding)
    # Measure the gateway, not a budget: a monthly token budget far beyond the run.
    async with direct_channel(mesh.address("metering")) as channel:
        stub = metering_pb2_grpc.MeteringServiceStub(channel)
        current = await stub.GetTenantLimits(
            metering_pb2.GetTenantLimitsRequest(tenant_id=tid), metadata=mesh.metadata(Role.PLATFORM_ADMIN)
        )
        overrides = metering_pb2.PlanLimits()
        overrides.CopyFrom(current.overrides)
        overrides.llm_monthly_tokens = 10**12
        await stub.SetTenantLimits(
            metering_pb2.SetTenantLimitsRequest(tenant_id=tid, overrides=overrides),
            metadata=mesh.metadata(Role.PLATFORM_ADMIN),
        )
    return tid


@dataclass
class Path:
    name: str
    chat: Op
    stream: Op  # records its time to first token in ttft[i]
    ttft: list[float]


def _http_path(
    name: str, session: aiohttp.ClientSession, url: str, headers: dict[str, str], model: str, n: int
) -> Path:
    ttft = [0.0] * n
    body = {"model": model, "messages": MESSAGES}
    stream_body = {**body, "stream": True}

    async def chat(i: int) -> None:
        async with session.post(url, json=body, headers=headers) as r:
            data = await r.json()
            if r.status != 200 or not data["choices"][0]["message"]["content"]:
                raise AssertionError(f"{name}: {r.status} {str(data)[:200]}")

    async def stream(i: int) -> None:
        t0 = time.perf_counter()
        first = 0.0
        seen = bytearray()
        async with session.post(url, json=stream_body, headers=headers) as r:
            if r.status != 200:
                raise AssertionError(f"{name} stream: {r.status} {(await r.text())[:200]}")
            async for piece in r.content.iter_any():
                if not first and b'"content"' in piece:
                    first = time.perf_counter()
                seen += piece
        ttft[i % n] = first - t0
        if not seen.rstrip().endswith(b"data: [DONE]") or seen.count(b'"content"') < STREAM_CHUNKS:
            raise AssertionError(f"{name} stream ended without all chunks and [DONE]: {bytes(seen[-200:])!r}")

    return Path(name, chat, stream, ttft)


def _grpc_path(
    name: str, stub: llm_pb2_grpc.LLMServiceStub, tid: str, md: tuple[tuple[str, str], ...], n: int
) -> Path:
    ttft = [0.0] * n
    request = llm_pb2.CreateChatCompletionRequest(
        tenant_id=tid, model="chat", messages=[llm_pb2.ChatMessage(**m) for m in MESSAGES]
    )

    async def chat(i: int) -> None:
        answer = await stub.CreateChatCompletion(request, metadata=md)
        if not answer.choices[0].message.content:
            raise AssertionError(f"{name}: empty answer")

    async def stream(i: int) -> None:
        t0 = time.perf_counter()
        first = 0.0
        deltas = 0
        async for chunk in stub.StreamChatCompletion(request, metadata=md):
            if chunk.delta:
                deltas += 1
                if not first:
                    first = time.perf_counter()
        ttft[i % n] = first - t0
        if deltas < STREAM_CHUNKS:
            raise AssertionError(f"{name} stream: {deltas} chunks")

    return Path(name, chat, stream, ttft)


def _median(values: list[float]) -> float:
    ordered = sorted(v for v in values if v > 0)
    return ordered[len(ordered) // 2] if ordered else 0.0


def _tree(name: str, pid: int) -> dict[str, int]:
    """A process and its children (LiteLLM's CLI runs its server in a child), to sum their CPU."""
    out = {name: pid}
    with contextlib.suppress(psutil.Error):
        for i, child in enumerate(psutil.Process(pid).children(recursive=True)):
            out[f"{name}#{i}"] = child.pid
    return out


def _cpu(res: LoadResult, name: str) -> float:
    return sum(v for k, v in res.cpu.items() if k == name or k.startswith(f"{name}#")) / res.requests * 1e6


async def bench_llm(cfg: Config, env: Environment) -> Table:
    mesh = env.mesh
    assert mesh is not None
    n1, n16, ns = cfg.llm_requests_c1, cfg.llm_requests_c16, cfg.llm_stream_requests
    table = Table(
        "6. LLM gateway: added latency, req/s, TTFT and CPU per call vs the upstream alone and "
        "LiteLLM (issue 10)",
        [
            "path",
            "p50 ms c=1",
            "added p50 ms",
            "req/s c=16",
            "req/s vs LiteLLM",
            "TTFT ms c=1",
            "added TTFT ms",
            "gateway CPU µs/chat",
            "gateway CPU µs/stream",
            "Envoy CPU µs/chat",
            "Metering CPU µs/chat",
        ],
    )
    upstream_port, litellm_port = free_port(), free_port()
    with (
        mock_upstream(upstream_port) as upstream_v1,
        running_litellm(env.root / "litellm", upstream_v1, litellm_port) as peer,
    ):
        tid = await _llm_tenant(mesh, upstream_v1)
        md = mesh.metadata(Role.MEMBER, tid)
        llm_pid = mesh.server_pid("llm")
        watch = {
            "llm": llm_pid,
            "envoy": mesh.envoy_pid(),
            "metering": mesh.server_pid("metering"),
            "client": os.getpid(),
        }
        if isinstance(peer, LiteLLM):
            watch.update(_tree("litellm", peer.pid))
        connector = aiohttp.TCPConnector(limit=64)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session,
            direct_channel(mesh.address("llm")) as channel,
        ):
            stub = llm_pb2_grpc.LLMServiceStub(channel)
            paths = [
                _http_path(
                    "mock upstream alone (HTTP)", session, f"{upstream_v1}/chat/completions", {}, MODEL, ns
                ),
                _grpc_path("LLMService, gRPC direct", stub, tid, md, ns),
                _http_path(
                    "LLMService OpenAI API through Envoy",
                    session,
                    f"{mesh.base_url}/v1/chat/completions",
                    dict(((k, v) for k, v in md)),
                    "chat",
                    ns,
                ),
            ]
            if isinstance(peer, LiteLLM):
                paths.append(
                    _http_path(
                        f"LiteLLM {peer.version} proxy (1 worker)",
                        session,
                        f"{peer.url}/v1/chat/completions",
                        {"authorization": f"Bearer {peer.key}"},
                        MODEL,
                        ns,
                    )
                )
            results: dict[str, tuple[LoadResult, LoadResult, LoadResult, float]] = {}
            for path in paths:
                say(f"LLM: {path.name} ...")
                await run_fixed(path.chat, cfg.llm_warmup, 4)
                await run_fixed(path.stream, max(4, cfg.llm_warmup // 10), 2)
                c1 = await run_fixed(path.chat, n1, 1, watch)
                c16 = await run_fixed(path.chat, n16, 16, watch)
                path.ttft[:] = [0.0] * ns
                streamed = await run_fixed(path.stream, ns, 1, watch)
                results[path.name] = (c1, c16, streamed, _median(path.ttft) * 1000)
                ttft_ms = results[path.name][3]
                say(f"LLM: {path.name}: p50 {c1.p50_ms:.2f} ms, {c16.rps:,.0f} req/s, TTFT {ttft_ms:.2f} ms")
    base_c1, _, _, base_ttft = results[paths[0].name]
    peer_rps = results[paths[3].name][1].rps if len(paths) > 3 else None
    for path in paths:
        c1, c16, streamed, ttft = results[path.name]
        gateway = "litellm" if path.name.startswith("LiteLLM") else "llm"
        is_base = path is paths[0]
        table.add(
            path.name,
            ms(c1.p50_ms),
            "-" if is_base else f"{c1.p50_ms - base_c1.p50_ms:+.2f}",
            rate(c16.rps),
            ratio(c16.rps, peer_rps) if peer_rps else "-",
            f"{ttft:.2f}",
            "-" if is_base else f"{ttft - base_ttft:+.2f}",
            "-" if is_base else f"{_cpu(c16, gateway):.0f}",
            "-" if is_base else f"{_cpu(streamed, gateway):.0f}",
            f"{_cpu(c16, 'envoy'):.0f}" if "Envoy" in path.name else "-",
            "-" if is_base or gateway == "litellm" else f"{_cpu(c16, 'metering'):.0f}",
        )
    table.notes += [
        f"Mock upstream: tests/bench/llm_upstream.py (a bare asyncio HTTP/1.1 server answering canned "
        f"OpenAI JSON; streams are {STREAM_CHUNKS} content chunks + usage + [DONE]). c=1: {n1} chats; "
        f"c=16: {n16} chats; streams: {ns} at c=1; after warm-up. One aiohttp session (keep-alive) for "
        "the HTTP paths, one gRPC channel for LLMService direct; this client runs on the same 2 cores.",
        "added = the path's p50 (or TTFT: first content chunk) minus the upstream alone's, same run. "
        "CPU µs per call: user+system CPU of the gateway process over the c=16 chat run (stream: the "
        "c=1 stream run) divided by the calls (psutil); LLMService's includes its usage spool and "
        "rate-limit round trips to Redis, MeteringService's is ingesting the usage events.",
        "The gateway verifies a JWT (in Envoy and in LLMService), checks the tenant, its rate limits "
        "and budget in Redis and meters every call (api_calls + token events); LiteLLM checks a master "
        "key, no database, no budgets.",
    ]
    if not isinstance(peer, LiteLLM):
        table.notes.append(f"LiteLLM skipped: {peer}")
    return table
