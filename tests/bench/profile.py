"""`make profile`: where a GetItem's CPU goes, per process, with py-spy.

    .venv/bin/python -m tests.bench.profile [--seconds 12] [--out docs/profile.md]

Starts the mesh as `makoto up` does (tests/bench/mesh.py) plus the bare grpc.aio echo
(tests/bench/echo.py), then:

1. CPU per call: a fixed GetItem load (direct to StorageService, and through Envoy) with every
   process's user+system CPU time measured over it (psutil), next to the echo baseline.
2. Profiles: py-spy samples StorageService, MeteringService and TenantService (non-blocking, so
   the process is not paused) while a steady GetItem load runs; the stacks are kept as collapsed
   stacks (`<name>.folded`, the input of every flame-graph tool) and drawn as an SVG flame graph
   (`<name>.svg`) under --svg-dir; the top functions by own and by inclusive time go to the
   report, as samples and as estimated µs per call.

A measurement, not a test: nothing passes or fails on a time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from makoto.storage.v1 import items_pb2, storage_service_pb2_grpc

from services.common.identity import Role
from tests.bench import items as item_bench
from tests.bench.echo import EchoProcess
from tests.bench.harness import say
from tests.bench.load import LoadResult, run_fixed
from tests.bench.mesh import BenchMesh, start_mesh, stop_mesh
from tests.bench.report import Table, ms, rate, ratio
from tests.bench.tenants import create_tenant
from tests.support import direct_channel, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "docs" / "profile.md"
DEFAULT_SVG_DIR = REPO_ROOT / ".makoto" / "profile"
SAMPLE_RATE = 250  # py-spy samples per second
# --gil: only samples of the thread holding the GIL (Python work and C code under the GIL);
# without it a thread waiting for the GIL counts as busy, which inflates helper threads.
GIL_ONLY = False
TOP = 15
PROFILED = ("storage", "metering", "tenant")


# -- load ------------------------------------------------------------------------------------


Op = Callable[[int], Awaitable[None]]


async def run_for(op: Op, seconds: float, concurrency: int) -> int:
    """`concurrency` workers call op back to back for `seconds`; how many calls completed."""
    done = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            await op(done)
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


@dataclass
class Target:
    mesh: BenchMesh
    echo: EchoProcess
    tenant_id: str
    metadata: tuple[tuple[str, str], ...]
    pids: dict[str, list[int]] = field(default_factory=dict)


def _pids(mesh: BenchMesh, echo: EchoProcess) -> dict[str, list[int]]:
    pids = {name: mesh.server_pids(name) for name in ("storage", "metering", "tenant")}
    pids["envoy"] = [mesh.envoy_pid()]
    pids["echo"] = [echo.pid]
    pids["client"] = [os.getpid()]
    return pids


async def prepare(mesh: BenchMesh, echo: EchoProcess) -> Target:
    tid = await create_tenant(mesh, "profile")
    md = mesh.metadata(Role.MEMBER, tid)
    async with direct_channel(mesh.address("storage")) as ch:
        item = items_pb2.Item(
            collection="hot", partition_key="p", sort_key="one", attributes=item_bench.attributes(1)
        )
        await storage_service_pb2_grpc.StorageServiceStub(ch).PutItem(
            items_pb2.PutItemRequest(tenant_id=tid, item=item), metadata=md
        )
    return Target(mesh, echo, tid, md, _pids(mesh, echo))


def get_item_op(stub: storage_service_pb2_grpc.StorageServiceStub, target: Target) -> Op:
    request = items_pb2.GetItemRequest(
        tenant_id=target.tenant_id, collection="hot", partition_key="p", sort_key="one"
    )

    async def op(i: int) -> None:
        got = await stub.GetItem(request, metadata=target.metadata)
        if got.sort_key != "one":
            raise AssertionError("GetItem returned another item")

    return op


def _watch(pids: dict[str, list[int]]) -> dict[str, int]:
    """run_fixed watches one pid per name: workers are summed by naming each."""
    return {f"{name}#{i}": pid for name, group in pids.items() for i, pid in enumerate(group)}


def cpu_us(result: LoadResult, name: str) -> float:
    total = sum(v for k, v in result.cpu.items() if k.split("#", 1)[0] == name)
    return total / result.requests * 1e6


# -- CPU per call ----------------------------------------------------------------------------


async def cpu_table(target: Target, requests: int, concurrency: int, rounds: int) -> Table:
    mesh = target.mesh
    table = Table(
        f"GetItem CPU per call, per process (c={concurrency})",
        [
            "path",
            "req/s",
            "vs echo",
            "p50 ms",
            "StorageService µs",
            "MeteringService µs",
            "TenantService µs",
            "Envoy µs",
            "all servers µs",
            "client µs",
        ],
    )
    async with (
        grpc.aio.insecure_channel(target.echo.address) as echo_ch,
        direct_channel(mesh.address("storage")) as direct_ch,
        grpc.aio.insecure_channel(mesh.envoy_target) as envoy_ch,
    ):
        paths = [
            (
                "bare grpc.aio echo (same messages)",
                get_item_op(storage_service_pb2_grpc.StorageServiceStub(echo_ch), target),
            ),
            (
                "GetItem direct to StorageService",
                get_item_op(storage_service_pb2_grpc.StorageServiceStub(direct_ch), target),
            ),
            (
                "GetItem through Envoy (gRPC)",
                get_item_op(storage_service_pb2_grpc.StorageServiceStub(envoy_ch), target),
            ),
        ]
        for _, op in paths:
            await run_fixed(op, max(200, requests // 10), concurrency)
        best: dict[str, LoadResult] = {}
        watch = _watch(target.pids)
        for r in range(rounds):
            for name, op in paths[r % 3 :] + paths[: r % 3]:
                res = await run_fixed(op, requests, concurrency, watch)
                say(
                    f"round {r + 1}: {name}: {res.rps:,.0f} req/s, "
                    f"storage {cpu_us(res, 'storage'):.0f} µs/call"
                )
                # The round with the least server CPU: the one the shared box disturbed least.
                servers = sum(cpu_us(res, n) for n in ("storage", "metering", "tenant", "envoy", "echo"))
                if name not in best or servers < sum(
                    cpu_us(best[name], n) for n in ("storage", "metering", "tenant", "envoy", "echo")
                ):
                    best[name] = res
    echo = best[paths[0][0]]
    for name, _ in paths:
        res = best[name]
        servers = sum(cpu_us(res, n) for n in ("storage", "metering", "tenant", "envoy", "echo"))
        table.add(
            name,
            rate(res.rps),
            ratio(res.rps, echo.rps),
            ms(res.p50_ms),
            f"{cpu_us(res, 'storage'):.0f}",
            f"{cpu_us(res, 'metering'):.0f}",
            f"{cpu_us(res, 'tenant'):.0f}",
            f"{cpu_us(res, 'envoy'):.0f}",
            f"{servers:.0f}",
            f"{cpu_us(res, 'client'):.0f}",
        )
    table.notes += [
        f"{requests} calls per path per round at concurrency {concurrency}, {rounds} rounds, path order "
        "rotated; each row is its round with the least server CPU (the least disturbed by the shared box). "
        "µs columns: user+system CPU time of that process (all its workers) over the round / calls "
        "(psutil); 'all servers' adds StorageService, MeteringService, TenantService, Envoy and the echo.",
        "The echo row is a bare grpc.aio server in its own process answering the same GetItem with a fixed "
        "Item: no interceptor, auth, limits, metering or store (tests/bench/echo.py).",
    ]
    return table


# -- profiles --------------------------------------------------------------------------------


def py_spy() -> Path | None:
    found = shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy")
    path = Path(found)
    return path if path.exists() else None


def parse_folded(text: str) -> list[tuple[list[str], int]]:
    stacks: list[tuple[list[str], int]] = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def _short(frame: str) -> str:
    """'run_unary (services/common/interceptor.py)' with site-packages paths trimmed."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    if str(REPO_ROOT) in where:
        where = os.path.relpath(where, REPO_ROOT)
    return f"{name} ({where})" if where else name


def top_entries(
    stacks: list[tuple[list[str], int]],
) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, count in stacks:
        total += count
        names = [_short(f) for f in frames]
        own[names[-1]] += count
        for name in set(names):
            if name.partition(" (")[2].startswith("services/"):
                inclusive[name] += count
    return own.most_common(TOP), inclusive.most_common(TOP * 2), total


def flame_svg(stacks: list[tuple[list[str], int]], title: str) -> str:
    """A plain SVG flame graph (root at the bottom, width = samples; hover shows the frame)."""
    tree: dict[str, object] = {}

    def node(children: dict[str, object], name: str) -> dict[str, object]:
        got = children.get(name)
        if got is None:
            got = {"n": 0, "c": {}}
            children[name] = got
        assert isinstance(got, dict)
        return got

    root: dict[str, object] = {"n": 0, "c": tree}
    for frames, count in stacks:
        root["n"] = int(root["n"]) + count  # type: ignore[call-overload]
        cur = root
        for f in frames:
            cur = node(cur["c"], _short(f))  # type: ignore[arg-type]
            cur["n"] = int(cur["n"]) + count  # type: ignore[call-overload]
    total = max(1, int(root["n"]))  # type: ignore[call-overload]
    width, row = 1800.0, 16
    rects: list[str] = []
    depth_max = 0

    def draw(children: dict[str, object], x: float, depth: int) -> None:
        nonlocal depth_max
        for name, child in sorted(children.items()):
            assert isinstance(child, dict)
            n = int(child["n"])
            w = width * n / total
            if w >= 0.5:
                depth_max = max(depth_max, depth)
                hue = 20 + (hash(name) % 40)
                label = name if w > 60 else ""
                esc = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                lab = label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                rects.append(
                    f"<g><title>{esc} ({n} samples, {100 * n / total:.1f}%)</title>"
                    f'<rect x="{x:.1f}" y="{{Y{depth}}}" width="{w:.1f}" height="{row - 1}" '
                    f'fill="hsl({hue},90%,60%)"/>'
                    f'<text x="{x + 2:.1f}" y="{{T{depth}}}" font-size="11" clip-path="none">'
                    f"{lab[: int(w / 7)]}</text></g>"
                )
                draw(child["c"], x, depth + 1)  # type: ignore[arg-type]
            x += w

    draw(tree, 0.0, 0)
    height = (depth_max + 3) * row
    body = "\n".join(rects)
    for d in range(depth_max + 1):
        y = height - (d + 2) * row
        body = body.replace(f"{{Y{d}}}", str(y)).replace(f"{{T{d}}}", str(y + row - 4))
    esc_title = title.replace("&", "&amp;").replace("<", "&lt;")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height}" '
        f'font-family="monospace"><text x="4" y="14" font-size="13">{esc_title}</text>\n{body}\n</svg>\n'
    )


@dataclass
class Profile:
    name: str
    calls: int
    seconds: float
    own: list[tuple[str, int]]
    inclusive: list[tuple[str, int]]
    samples: int


async def profile_services(
    target: Target, seconds: float, concurrency: int, svg_dir: Path, spy: Path
) -> list[Profile]:
    mesh = target.mesh
    svg_dir.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
    for name in PROFILED:
        for i, pid in enumerate(target.pids[name]):
            label = name if i == 0 else f"{name}-{i}"
            out = svg_dir / f"{label}.folded"
            procs.append(
                (
                    label,
                    out,
                    subprocess.Popen(
                        [
                            str(spy),
                            "record",
                            "--pid",
                            str(pid),
                            "--rate",
                            str(SAMPLE_RATE),
                            "--duration",
                            str(int(seconds)),
                            "--nonblocking",
                            *(["--gil"] if GIL_ONLY else []),
                            "--function",
                            "--format",
                            "raw",
                            "--output",
                            str(out),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    ),
                )
            )
    await asyncio.sleep(1.0)  # py-spy attached
    async with direct_channel(mesh.address("storage")) as ch:
        op = get_item_op(storage_service_pb2_grpc.StorageServiceStub(ch), target)
        calls = await run_for(op, seconds - 1.5, concurrency)
    profiles = []
    for label, out, proc in procs:
        try:
            _, err = await asyncio.to_thread(proc.communicate, timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"py-spy on {label} failed: {err.decode(errors='replace')[-500:]}")
        stacks = parse_folded(out.read_text())
        own, inclusive, total = top_entries(stacks)
        (svg_dir / f"{label}.svg").write_text(flame_svg(stacks, f"{label}: GetItem direct, c={concurrency}"))
        profiles.append(Profile(label, calls, seconds, own, inclusive, total))
    return profiles


def profile_tables(profiles: list[Profile]) -> list[Table]:
    tables = []
    for p in profiles:
        per_call = 1e6 / SAMPLE_RATE / max(1, p.calls)
        t = Table(
            f"{p.name}: top functions under GetItem load ({p.samples} samples, {p.calls} calls)",
            ["function (file)", "own samples", "own µs/call", "inclusive samples", "inclusive µs/call"],
        )
        inc = dict(p.inclusive)
        own = dict(p.own)
        seen: list[str] = []
        for name, _ in p.own:
            seen.append(name)
        for name, _ in p.inclusive:
            if name not in seen and len(seen) < TOP * 2:
                seen.append(name)
        for name in seen:
            o, i = own.get(name, 0), inc.get(name, 0)
            t.add(name, o, f"{o * per_call:.1f}", i or "", f"{i * per_call:.1f}" if i else "")
        t.notes.append(
            f"py-spy {SAMPLE_RATE} Hz, --nonblocking, "
            + (
                "--gil: only the thread holding the GIL is sampled (Python work and C code run under "
                "the GIL; grpc's core and SQLite outside the GIL are not seen)"
                if GIL_ONLY
                else "idle threads excluded (a thread waiting for the GIL counts as busy)"
            )
            + f"; µs/call = samples / {SAMPLE_RATE} Hz / calls served meanwhile (an estimate). "
            "C code (grpc's Cython core, sqlite3, protobuf) is counted in the Python frame that called it. "
            "Rows: the top functions by own time, then our own code (services/) by inclusive time."
        )
        tables.append(t)
    return tables


# -- main ------------------------------------------------------------------------------------


def render(tables: list[Table], started: dt.datetime, svg_dir: Path, load: tuple[float, ...]) -> str:
    head = [
        "# Profile: where a GetItem's CPU goes",
        "",
        "Written by `make profile` (tests/bench/profile.py). Same machine, same run for every row; absolute "
        f"numbers depend on what else the box ran (load average at start {load[0]:.2f} / {load[1]:.2f} / "
        f"{load[2]:.2f} on {os.cpu_count()} CPUs). Run at {started:%Y-%m-%d %H:%M} UTC; git "
        f"{_git_commit()}. Flame graphs (SVG) and collapsed stacks of this run: `{_rel(svg_dir)}/`.",
        "",
        "What the profile showed before the issue-10 cuts, what was cut and what is left: README.md, "
        "section Benchmarks. The CPU table is psutil's (every thread, user + system); the function "
        "tables are py-spy samples, with `--gil` (what `make profile` runs) only of the thread "
        "holding the GIL, without it of every busy thread (a thread waiting for the GIL counts).",
        "",
    ]
    return "\n".join(head) + "\n".join(t.markdown() for t in tables)


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


async def run(args: argparse.Namespace, mesh: BenchMesh, echo: EchoProcess) -> list[Table]:
    target = await prepare(mesh, echo)
    tables = []
    if not args.no_cpu:
        tables.append(await cpu_table(target, args.requests, args.concurrency, args.rounds))
    if not args.no_profile:
        spy = py_spy()
        if spy is None:
            say("py-spy not installed: no profiles (pip install py-spy)")
        else:
            say(f"profiling {', '.join(PROFILED)} for {args.seconds:.0f} s ...")
            tables += profile_tables(
                await profile_services(target, args.seconds, args.concurrency, args.svg_dir, spy)
            )
    return tables


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.profile", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=12.0, help="profiling load duration")
    parser.add_argument("--requests", type=int, default=3000, help="calls per path per CPU round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report (markdown)")
    parser.add_argument("--svg-dir", type=Path, default=DEFAULT_SVG_DIR, help="flame graphs go here")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU-per-call table")
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy")
    parser.add_argument("--print-only", action="store_true", help="print, do not write --out")
    parser.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    args = parser.parse_args(argv)
    global GIL_ONLY
    GIL_ONLY = args.gil
    started = dt.datetime.now(dt.UTC)
    load = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="makoto-profile-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, root, True)
        say("starting the mesh ...")
        mesh = start_mesh(root / "mesh")
        stack.callback(stop_mesh, mesh)
        echo = EchoProcess("127.0.0.1", free_port())
        stack.callback(echo.stop)
        tables = asyncio.run(run(args, mesh, echo))
    text = render(tables, started, args.svg_dir, load)
    print(text)
    if not args.print_only:
        args.out.write_text(text)
        say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
