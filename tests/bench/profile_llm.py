"""Where a chat completion's CPU goes in LLMService, with py-spy (issue 10, item 4).

    .venv/bin/python -m tests.bench.profile_llm [--seconds 12] [--path grpc|openai] [--svg-dir DIR]

Starts the mesh as `makoto up` does (tests/bench/mesh.py) and the bench's mock OpenAI upstream
(tests/bench/llm_upstream.py), makes a tenant bound to it, then samples LLMService with py-spy
(non-blocking) while `--concurrency` clients send non-streamed chats back to back: over gRPC
directly, or to the OpenAI-compatible API through Envoy. Prints the CPU per chat of LLMService
(psutil, over the sampled window) and its top functions by own and inclusive time; keeps the
collapsed stacks and an SVG flame graph under --svg-dir.

A measurement, not a test: nothing passes or fails on a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import tempfile
from pathlib import Path

import aiohttp
import psutil
from makoto.llm.v1 import llm_pb2, llm_pb2_grpc

from services.common.identity import Role
from tests.bench.mesh import start_mesh, stop_mesh
from tests.bench.profile import (
    DEFAULT_SVG_DIR,
    SAMPLE_RATE,
    Op,
    flame_svg,
    parse_folded,
    py_spy,
    run_for,
    top_entries,
)
from tests.bench.section_llm import MESSAGES, _llm_tenant, mock_upstream
from tests.support import direct_channel, free_port


async def _profile(args: argparse.Namespace, root: Path) -> None:
    spy = py_spy()
    if spy is None:
        raise SystemExit("py-spy not installed (pip install py-spy)")
    mesh = start_mesh(root)
    try:
        with mock_upstream(free_port()) as upstream_v1:
            tid = await _llm_tenant(mesh, upstream_v1)
            md = mesh.metadata(Role.MEMBER, tid)
            pid = mesh.server_pid("llm")
            async with (
                direct_channel(mesh.address("llm")) as channel,
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session,
            ):
                stub = llm_pb2_grpc.LLMServiceStub(channel)
                request = llm_pb2.CreateChatCompletionRequest(
                    tenant_id=tid, model="chat", messages=[llm_pb2.ChatMessage(**m) for m in MESSAGES]
                )
                body = {"model": "chat", "messages": MESSAGES, "stream": args.stream}
                headers = dict(md)

                async def grpc_op(i: int) -> None:
                    if args.stream:
                        async for _ in stub.StreamChatCompletion(request, metadata=md):
                            pass
                    else:
                        await stub.CreateChatCompletion(request, metadata=md)

                async def openai_op(i: int) -> None:
                    async with session.post(
                        f"{mesh.base_url}/v1/chat/completions", json=body, headers=headers
                    ) as r:
                        await r.read()
                        if r.status != 200:
                            raise AssertionError(r.status)

                op: Op = grpc_op if args.path == "grpc" else openai_op
                await run_for(op, 3.0, args.concurrency)  # warm-up: clients, caches, connections
                args.svg_dir.mkdir(parents=True, exist_ok=True)
                label = f"llm-{args.path}{'-stream' if args.stream else ''}"
                out = args.svg_dir / f"{label}.folded"
                proc = subprocess.Popen(
                    [
                        str(spy),
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        str(SAMPLE_RATE),
                        "--duration",
                        str(int(args.seconds)),
                        "--nonblocking",
                        "--function",
                        "--format",
                        "raw",
                        "--output",
                        str(out),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                await asyncio.sleep(1.0)
                cpu0 = psutil.Process(pid).cpu_times()
                calls = await run_for(op, args.seconds - 1.5, args.concurrency)
                cpu1 = psutil.Process(pid).cpu_times()
                _, err = await asyncio.to_thread(proc.communicate, timeout=60)
                if proc.returncode != 0:
                    raise RuntimeError(err.decode(errors="replace")[-500:])
    finally:
        stop_mesh(mesh)
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    stacks = parse_folded(out.read_text())
    own, inclusive, total = top_entries(stacks)
    (args.svg_dir / f"{label}.svg").write_text(flame_svg(stacks, f"{label}, c={args.concurrency}"))
    per_call = 1e6 / SAMPLE_RATE / max(1, calls)
    print(
        f"{label}: {calls} calls in {args.seconds - 1.5:.1f} s, "
        f"LLMService CPU {used / calls * 1e6:.0f} µs/call"
    )
    print(f"samples {total}; own:")
    for name, n in own:
        print(f"  {n:6d} {n * per_call:8.1f} µs  {name}")
    print("inclusive (services/):")
    for name, n in inclusive:
        print(f"  {n:6d} {n * per_call:8.1f} µs  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.profile_llm", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--path", choices=("grpc", "openai"), default="grpc")
    parser.add_argument("--stream", action="store_true", help="streamed chats instead of whole ones")
    parser.add_argument("--svg-dir", type=Path, default=DEFAULT_SVG_DIR)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="makoto-llmprof-") as tmp:
        asyncio.run(_profile(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
