"""Resource telemetry sampled during the measurement window.

Samplers run in a background thread (not on the load client's event loop) at a
fixed interval and return time series ``name -> [[t_rel_s, value], ...]``:

* :class:`perfgate.measure.gpu_telemetry.EngineGpuSampler` — the engine's GPU
  figures (its processes' memory, utilization from NVML's sample buffer, energy,
  power, clocks, temperature, throttle reasons), with a window of its own;
* :class:`HostSampler` — resident memory (MiB) and CPU (%) of the engine's
  process tree, for CPU engines and for the host side of GPU engines;
* :class:`EngineGaugeSampler` — the engine's own /metrics gauges (opt-in).
"""

from __future__ import annotations

import threading
import time
from fnmatch import fnmatchcase
from typing import Protocol

import psutil


class Sampler(Protocol):
    """``sample`` every poll; optional ``start_window()`` / ``end_window() -> series`` bracket the window."""

    def sample(self) -> dict[str, float]: ...

    def close(self) -> None: ...


class HostSampler:
    """Memory and CPU of a process and its descendants (the engine server)."""

    def __init__(self, pid: int):
        self._root = psutil.Process(pid)
        self._procs: dict[int, psutil.Process] = {}
        self._ncpu = psutil.cpu_count() or 1

    def sample(self) -> dict[str, float]:
        try:
            tree = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return {}
        rss = cpu = 0.0
        for p in tree:
            proc = self._procs.setdefault(p.pid, p)  # keep objects: cpu_percent needs the previous call
            try:
                rss += proc.memory_info().rss
                cpu += proc.cpu_percent(None)
            except psutil.NoSuchProcess:
                continue
        return {"engine.rss_mib": rss / 2**20, "engine.cpu_pct": cpu / self._ncpu}

    def close(self) -> None:
        pass


class EngineGaugeSampler:
    """The engine's own gauges from /metrics (KV-cache use, running and waiting requests).

    Scrapes at most every ``min_interval_s`` so that observing the engine does
    not become load on it.
    """

    def __init__(self, base_url: str, min_interval_s: float = 1.0, headers: dict[str, str] | None = None,
                 prefix: str | None = None):
        self.base_url = base_url
        self.prefix = prefix  # the engine's metrics prefix (None: every known one)
        self.min_interval_s = min_interval_s
        self._last = -1e9
        self._headers = headers

    def sample(self) -> dict[str, float]:
        now = time.perf_counter()
        if now - self._last < self.min_interval_s:
            return {}
        self._last = now
        from perfgate.measure.engine_metrics import gauges, scrape

        values = scrape(self.base_url, timeout=2.0, headers=self._headers, prefix=self.prefix) or {}
        return {f"engine.{name.replace(':', '.')}": values[name] for name in gauges(self.prefix) if name in values}

    def close(self) -> None:
        pass


class TelemetryRecorder:
    """Sample all samplers every ``interval_s`` in a daemon thread between start() and stop().

    stop() waits for the thread at most ``join_timeout_s`` (every NVML call is bounded,
    but nothing a sampler does may hold the trial): a thread still running then is left
    behind, said in :attr:`notes`, and its late samples are not taken.
    """

    def __init__(self, samplers: list[Sampler], interval_s: float = 0.25, join_timeout_s: float = 15.0):
        self.samplers = samplers
        self.interval_s = interval_s
        self.join_timeout_s = join_timeout_s
        self.series: dict[str, list[list[float]]] = {}
        self.notes: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._lock = threading.Lock()

    def _take(self, plain_only: bool = False) -> None:
        t = round(time.perf_counter() - self._t0, 3)
        for s in self.samplers:
            if self._stop.is_set() and threading.current_thread() is self._thread:
                return
            if plain_only and hasattr(s, "end_window"):
                continue
            try:
                values = s.sample()
            except Exception:  # a sampler failing must not kill the measurement
                continue
            with self._lock:
                for name, value in values.items():
                    self.series.setdefault(name, []).append([t, round(value, 3)])

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._take()

    def start(self) -> None:
        self._t0 = time.perf_counter()
        for s in self.samplers:
            try:
                getattr(s, "start_window", lambda: None)()
            except Exception:
                pass
        self._take()
        self._thread = threading.Thread(target=self._loop, name="perfgate-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, list[list[float]]]:
        self._stop.set()
        if self._thread:
            self._thread.join(self.join_timeout_s)
        stuck = self._thread is not None and self._thread.is_alive()
        if stuck:  # a sampler stuck in a call: do not call it again
            self.notes.append(f"telemetry thread still busy {self.join_timeout_s:g} s after the window: left behind")
        for s in self.samplers:  # windowed samplers first: their end (energy) is the window's end
            try:
                extra = s.end_window() if hasattr(s, "end_window") else {}
            except Exception:
                extra = {}
            with self._lock:
                self.series.update(extra)
        if not stuck:
            self._take(plain_only=True)
        for s in self.samplers:
            try:
                s.close()
            except Exception:
                pass
        with self._lock:
            return {k: list(v) for k, v in self.series.items()}


def telemetry_summary(series: dict[str, list[list[float]]], exclude: tuple[str, ...] = ("*clock_mhz",)
                      ) -> dict[str, float]:
    """Peak and mean of each telemetry series, e.g. ``gpu0.engine_memory_mib.max``; ``exclude``: series
    left out (clocks: a verdict would read a lower clock as better; the GPU record has their min and mean)."""
    out = {}
    for name, points in series.items():
        if any(fnmatchcase(name, pat) for pat in exclude):
            continue
        values = [v for _, v in points]
        if values:
            out[f"{name}.max"] = max(values)
            out[f"{name}.mean"] = sum(values) / len(values)
    return out
