"""`make bench`: the MAKOTO benchmarks, in one run, against baselines measured in the same run.

    .venv/bin/python -m tests.bench.run [--quick] [--out docs/benchmarks.md]

Starts everything it needs on free ports under a temporary directory — the mesh exactly as
`makoto up` starts it, moto_server (S3 + DynamoDB), Azurite (Blob), cosmosdb-server, and a
fresh database on the local PostgreSQL — and stops it all at the end, on error and on Ctrl-C /
SIGTERM too. Prints the tables and writes them, with the machine facts, to docs/benchmarks.md.

These are measurements, not tests: nothing here passes or fails on a time. What is checked is
behaviour (every answer is the right item, every object comes back byte-for-byte), so a fast
wrong answer cannot make a number. A backend that cannot be measured gets a row that says why.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

from tests.bench.harness import Config, Environment, postgres_database, say, start_everything
from tests.bench.report import MachineFacts, Table
from tests.bench.section_getitem import bench_getitem
from tests.bench.section_ingest import bench_ingest
from tests.bench.section_items import bench_items
from tests.bench.section_limits import bench_limits
from tests.bench.section_llm import bench_llm
from tests.bench.section_objects import bench_objects
from tests.bench.section_workers import bench_workers

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "docs" / "benchmarks.md"


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


SECTIONS = ("getitem", "objects", "items", "limits", "llm", "workers", "ingest")


async def run_all(cfg: Config, env: Environment, only: set[str]) -> list[Table]:
    tables: list[Table] = []
    async with postgres_database(env):
        if "getitem" in only:
            say("1/8 GetItem: direct vs Envoy gRPC vs Envoy REST ...")
            tables.append(await bench_getitem(cfg, env))
        if "objects" in only:
            say("2-3/8 objects ...")
            t2, t3 = await bench_objects(cfg, env)
            tables += [t2, t3]
        if "items" in only:
            say("4/8 items ...")
            tables.append(await bench_items(cfg, env))
        if "limits" in only:
            say("5/8 tenant limits: limiter cost, noisy neighbour ...")
            tables += list(await bench_limits(cfg, env))
        if "llm" in only:
            say("6/8 LLM gateway vs the upstream alone and LiteLLM ...")
            tables.append(await bench_llm(cfg, env))
        if "workers" in only:
            say("7/8 StorageService with 1 and 2 workers ...")
            tables.append(await bench_workers(cfg, env))
        if "ingest" in only:
            say("8/8 durable usage ingest: RecordUsage, spool, JetStream ...")
            tables.append(await bench_ingest(cfg, env))
    return tables


def render(tables: list[Table], facts: MachineFacts, quick: bool) -> str:
    head = [
        "# Benchmarks",
        "",
        "Written by `make bench` (tests/bench/run.py); rerun it to refresh this file. Every ratio compares "
        "against a baseline measured in the same run on the same machine (direct gRPC, the direct SDK call, "
        "raw disk); the absolute numbers depend on the box and on whatever else ran on it (see the load "
        "average). Nothing here is a pass/fail test: the run only checks that every answer is correct.",
        "",
    ]
    if quick:
        head += ["**--quick run: toy sizes, the numbers mean little.**", ""]
    head += ["## Machine and run", "", facts.markdown(), "## Results", ""]
    return "\n".join(head) + "\n".join(t.markdown() for t in tables)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes: check the pipeline, not the numbers")
    parser.add_argument(
        "--out", type=Path, default=None, help="report file (default docs/benchmarks.md; none with --only)"
    )
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only this section (repeatable); printed only"
    )
    args = parser.parse_args(argv)
    only = set(args.only or SECTIONS)
    out = args.out or (None if args.only else DEFAULT_OUT)
    cfg = Config.quick() if args.quick else Config()
    command = " ".join(
        [
            os.path.relpath(sys.executable, REPO_ROOT),
            "-m",
            "tests.bench.run",
            *(argv if argv is not None else sys.argv[1:]),
        ]
    )
    facts = MachineFacts(
        command=command,
        command_note="(what `make bench` runs)" if command.endswith("tests.bench.run") else "",
        started=dt.datetime.now(dt.UTC),
        load_before=os.getloadavg(),
    )
    signal.signal(signal.SIGTERM, _interrupt)
    root = Path(tempfile.mkdtemp(prefix="makoto-bench-"))
    env = Environment(root)
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, root, True)
            if only - {"ingest"}:  # the ingest section starts its own MeteringService processes
                start_everything(env, stack, emulators=bool(only & {"objects", "items"}))
            tables = asyncio.run(run_all(cfg, env, only))
            say("stopping everything ...")
    except KeyboardInterrupt:
        say("interrupted: everything started has been stopped")
        return 130
    facts.duration_s = time.monotonic() - started
    facts.load_after = os.getloadavg()
    facts.postgres_version = env.pg_version
    text = render(tables, facts, args.quick)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        say(f"wrote {out} (total {facts.duration_s:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
