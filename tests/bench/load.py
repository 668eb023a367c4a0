"""A fixed number of requests at a fixed concurrency, timed one by one."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from tests.bench.memory import cpu_seconds

Op = Callable[[int], Awaitable[None]]


@dataclass(frozen=True)
class LoadResult:
    requests: int
    concurrency: int
    seconds: float
    latencies: tuple[float, ...]  # seconds, sorted
    cpu: Mapping[str, float] = field(default_factory=dict)  # CPU seconds each watched process used

    def cpu_us_per_request(self, name: str) -> float:
        return self.cpu[name] / self.requests * 1e6

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile, in seconds."""
        index = min(len(self.latencies) - 1, max(0, round(q * len(self.latencies)) - 1))
        return self.latencies[index]

    @property
    def p50_ms(self) -> float:
        return self.quantile(0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return self.quantile(0.99) * 1000


async def run_fixed(
    op: Op, requests: int, concurrency: int, watch: Mapping[str, int] | None = None
) -> LoadResult:
    """`concurrency` workers take request numbers 0..requests-1 until none are left; every
    request must succeed (op raises otherwise and the whole measurement fails). `watch`
    (name -> pid): processes whose CPU time over the run is reported."""
    latencies = [0.0] * requests
    counter = iter(range(requests))

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter()
            await op(i)
            latencies[i] = time.perf_counter() - t0

    watch = watch or {}
    cpu_before = {name: cpu_seconds(pid) for name, pid in watch.items()}
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in watch.items()}
    return LoadResult(requests, concurrency, elapsed, tuple(sorted(latencies)), cpu)


def median_result(results: list[LoadResult]) -> LoadResult:
    """The round whose throughput is the median (rounds are whole runs; not mixed)."""
    ordered = sorted(results, key=lambda r: r.rps)
    return ordered[len(ordered) // 2]


def spread(results: list[LoadResult]) -> float:
    """(max - min) / median of the rounds' throughput: how noisy the box was."""
    values = [r.rps for r in results]
    return (max(values) - min(values)) / statistics.median(values)
