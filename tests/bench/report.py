"""Markdown tables and the machine facts that go with them."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        for row in self.rows:
            padded = row + [""] * (len(self.headers) - len(row))
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in padded) + " |")
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines) + "\n"


def rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def ms(value: float) -> str:
    return f"{value:.2f}"


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


def mib(value: int | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / (1024 * 1024):.1f} MiB"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _npm_version(name: str) -> str:
    try:
        data = json.loads((REPO_ROOT / "node_modules" / name / "package.json").read_text())
        return str(data.get("version", "?"))
    except (OSError, ValueError):
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError):
        pass
    return "unknown"


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return f"{head}{' + uncommitted changes' if dirty else ''}" if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _envoy_version() -> str:
    from services.mesh.processes import envoy_binary

    try:
        out = subprocess.run([str(envoy_binary()), "--version"], capture_output=True, text=True, timeout=10)
        text = out.stdout.strip().split("version:")[-1].strip()
        return text.split("/")[1] if "/" in text else text
    except (OSError, subprocess.SubprocessError, IndexError, RuntimeError):
        return "unknown"


@dataclass
class MachineFacts:
    command: str
    started: dt.datetime
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    duration_s: float = 0.0
    postgres_version: str = "not reached"
    command_note: str = ""

    def markdown(self) -> str:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        load = "{:.2f} / {:.2f} / {:.2f}"
        rows = [
            ("command", f"`{self.command}` {self.command_note}".strip()),
            ("date (UTC)", self.started.strftime("%Y-%m-%d %H:%M:%S")),
            ("total run time", f"{self.duration_s:.0f} s"),
            ("nproc", f"{affinity} (os.cpu_count() = {os.cpu_count()})"),
            ("CPU", _cpu_model()),
            ("memory", _mem_total()),
            ("OS", f"{platform.system()} {platform.release()}"),
            ("Python", f"{platform.python_implementation()} {sys.version.split()[0]}"),
            ("load average before (1/5/15 min)", load.format(*self.load_before)),
            ("load average after", load.format(*self.load_after)),
            ("git commit", _git_commit()),
            ("Envoy", _envoy_version()),
            (
                "libraries",
                ", ".join(
                    f"{d} {_version(d)}"
                    for d in (
                        "grpcio",
                        "httpx",
                        "aioboto3",
                        "azure-storage-blob",
                        "azure-cosmos",
                        "asyncpg",
                        "aiosqlite",
                        "moto",
                    )
                ),
            ),
            (
                "emulators",
                f"moto_server {_version('moto')}, azurite {_npm_version('azurite')}, "
                f"@vercel/cosmosdb-server {_npm_version('@vercel/cosmosdb-server')}, "
                f"PostgreSQL {self.postgres_version}",
            ),
        ]
        lines = ["| fact | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in rows]
        return "\n".join(lines) + "\n"
