"""Peak resident memory of another process while something runs, sampled with psutil."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil

SAMPLE_INTERVAL_S = 0.02


class PeakRss:
    """`with PeakRss(pid) as m: ...` then m.baseline, m.peak, m.growth (bytes).

    The baseline is the RSS just before the block; a thread samples every ~20 ms until it ends.
    RSS misses allocations shorter than one interval; gRPC/Python buffers live far longer."""

    def __init__(self, pid: int, interval: float = SAMPLE_INTERVAL_S) -> None:
        self._proc = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.baseline = 0
        self.peak = 0
        self.samples = 0

    def _rss(self) -> int:
        return int(self._proc.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self._rss()
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.samples += 1
            self._stop.wait(self._interval)

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.baseline)

    def __enter__(self) -> PeakRss:
        self.baseline = self._rss()
        self.peak = self.baseline
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        try:
            self.peak = max(self.peak, self._rss())
        except psutil.Error:
            pass


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)
