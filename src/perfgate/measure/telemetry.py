"""Resource telemetry sampled during the measurement window.

Samplers run in a background thread (not on the load client's event loop) at a
fixed interval and return time series ``name -> [[t_rel_s, value], ...]``:

* :class:`NvmlSampler` — GPU memory used (MiB), power (W) and utilization (%)
  of the GPUs the engine uses (its ``CUDA_VISIBLE_DEVICES`` mapped to NVML
  devices by UUID, :mod:`perfgate.engines.gpus`), through NVML (``nvidia-ml-py``);
  ``gpu<i>`` is the engine's ``cuda:<i>``. A MIG instance reports its own
  memory; power and utilization are its parent GPU's (NVML has no per-instance figure);
* :class:`HostSampler` — resident memory (MiB) and CPU (%) of the engine's
  process tree, for CPU engines and for the host side of GPU engines.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import psutil


class Sampler(Protocol):
    def sample(self) -> dict[str, float]: ...

    def close(self) -> None: ...


class NvmlSampler:
    """GPU figures via NVML for the engine's devices; construct only where ``nvmlInit`` succeeds.

    ``visible`` is the engine's ``CUDA_VISIBLE_DEVICES`` (``os.environ``'s when None).
    """

    def __init__(self, nvml=None, visible: str | None = None):
        from perfgate.engines.gpus import engine_devices, load_nvml

        self._nvml = load_nvml(nvml)
        try:
            self.devices = engine_devices(self._nvml, visible)
        except Exception:
            self._nvml.nvmlShutdown()
            raise
        self._handles = [d.handle for d in self.devices]

    def sample(self) -> dict[str, float]:
        nv = self._nvml
        out: dict[str, float] = {}
        for i, d in enumerate(self.devices):
            for name, read in (
                ("memory_used_mib", lambda: nv.nvmlDeviceGetMemoryInfo(d.handle).used / 2**20),
                ("power_w", lambda: nv.nvmlDeviceGetPowerUsage(d.parent_handle) / 1000.0),  # mW -> W
                ("utilization_pct", lambda: float(nv.nvmlDeviceGetUtilizationRates(d.parent_handle).gpu)),
            ):
                try:
                    out[f"gpu{i}.{name}"] = read()
                except Exception:  # e.g. not supported on this device: the other figures still count
                    continue
        return out

    def close(self) -> None:
        self._nvml.nvmlShutdown()


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


def gpu_sampler(visible: str | None = None, nvml=None) -> NvmlSampler | None:
    """An NVML sampler of the engine's GPUs when a GPU is usable, else None (CPU machines)."""
    try:
        sampler = NvmlSampler(nvml, visible)
    except Exception:
        return None
    return sampler if sampler._handles else None


class TelemetryRecorder:
    """Sample all samplers every ``interval_s`` in a daemon thread between start() and stop()."""

    def __init__(self, samplers: list[Sampler], interval_s: float = 0.25):
        self.samplers = samplers
        self.interval_s = interval_s
        self.series: dict[str, list[list[float]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _take(self) -> None:
        t = round(time.perf_counter() - self._t0, 3)
        for s in self.samplers:
            try:
                values = s.sample()
            except Exception:  # a sampler failing must not kill the measurement
                continue
            for name, value in values.items():
                self.series.setdefault(name, []).append([t, round(value, 3)])

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._take()

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._take()
        self._thread = threading.Thread(target=self._loop, name="perfgate-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, list[list[float]]]:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._take()
        for s in self.samplers:
            try:
                s.close()
            except Exception:
                pass
        return self.series


def telemetry_summary(series: dict[str, list[list[float]]]) -> dict[str, float]:
    """Peak and mean of each telemetry series, e.g. ``gpu0.memory_used_mib.max``."""
    out = {}
    for name, points in series.items():
        values = [v for _, v in points]
        if values:
            out[f"{name}.max"] = max(values)
            out[f"{name}.mean"] = sum(values) / len(values)
    return out
