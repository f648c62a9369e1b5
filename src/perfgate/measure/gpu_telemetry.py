"""GPU telemetry of the engine, not of the device, over exactly one trial's window.

Of the GPUs the engine uses (its ``CUDA_VISIBLE_DEVICES`` mapped by UUID,
:mod:`perfgate.engines.gpus`; ``gpu<i>`` is the engine's ``cuda:<i>``):

* **engine memory**: NVML's compute processes on the device whose PIDs are in
  the engine's process tree (psutil, re-read every poll). A paused live-A/B
  side or any other process is not counted; the device-wide figure is kept
  beside it (``memory_used_mib``);
* **utilization** from NVML's own sample buffer (``nvmlDeviceGetSamples``,
  GPU utilization), drained every poll and cut to the window by the samples'
  timestamps, so idle polls at the window's edges are never averaged in;
  polled ``nvmlDeviceGetUtilizationRates`` only where the buffer is not
  supported (the record says which);
* **energy** from the total-energy counter (mJ) read at window start and end;
* power, SM/memory clocks, temperature and clock-event (throttle) reasons, polled.

Every call goes through the bounded NVML of :func:`perfgate.engines.gpus.load_nvml`:
one that overruns makes this trial's record ``unavailable: NVML call timed out ...``
(no GPU figure, no series) and the trial goes on.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil

from perfgate.engines import gpus
from perfgate.schema.result import GpuDeviceTelemetry, GpuTelemetry

GPU_UTILIZATION_SAMPLES = 1  # NVML_GPU_UTILIZATION_SAMPLES
NOT_FOUND = 6  # NVML_ERROR_NOT_FOUND: no sample newer than lastSeenTimeStamp
TEMPERATURE_GPU = 0  # NVML_TEMPERATURE_GPU
VALUE_FIELDS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}  # nvmlValueType_t

CLOCK_EVENT_REASONS = {  # nvmlClocksEventReason* / nvmlClocksThrottleReason* bits (nvml.h), without the prefix
    0x1: "GpuIdle", 0x2: "ApplicationsClocksSetting", 0x4: "SwPowerCap", 0x8: "HwSlowdown", 0x10: "SyncBoost",
    0x20: "SwThermalSlowdown", 0x40: "HwThermalSlowdown", 0x80: "HwPowerBrakeSlowdown",
    0x100: "DisplayClockSetting", 0x200: "BoardLimit", 0x400: "Reliability",
}

def reason_names(mask: int) -> list[str]:
    """The names of the bits set in a clock-event reasons mask (unknown bits as hex)."""
    return [CLOCK_EVENT_REASONS.get(1 << b, f"0x{1 << b:x}") for b in range(64) if mask >> b & 1]


@dataclass
class _State:
    """What one device has gathered so far in the window."""

    device: gpus.GpuDevice
    energy_start_mj: int | None = None
    last_seen_us: int = 0
    util_points: list[tuple[int, float]] = field(default_factory=list)  # (NVML timestamp µs, %)
    util_polled: bool = False
    polls: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class EngineGpuSampler:
    """The engine's GPU figures over one window: :meth:`start_window`, :meth:`sample` every poll, :meth:`end_window`.

    It keeps its own series (utilization points carry NVML's timestamps, not the
    poll's) and hands them over at :meth:`end_window`, with :attr:`record`.
    ``root_pid``: the engine server's process (its whole tree counts); None: no engine memory.
    """

    def __init__(self, nvml, devices: list[gpus.GpuDevice], root_pid: int | None):
        self._nv = nvml
        self.devices = devices
        self._root = root_pid
        self._states = [_State(d) for d in devices]
        self.series: dict[str, list[list[float]]] = {}
        self.record: GpuTelemetry | None = None
        self._failure: str | None = None
        self._missing: dict[str, str] = {}
        self._pids_seen: set[int] = set()
        self._foreign: set[int] = set()
        self._lock = threading.Lock()
        self._t0 = 0.0
        self._start_us = 0
        self._reasons_calls = ["nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"]

    # -- reads --------------------------------------------------------------------------------------------
    def _read(self, what: str, name: str, *args):
        """One NVML call; None (and a note, once per figure) when it fails, nothing more after a timeout."""
        if self._failure:
            return None
        try:
            return getattr(self._nv, name)(*args)
        except gpus.NvmlTimeout as exc:
            self._failure = f"unavailable: {exc}"
        except Exception as exc:  # not supported here, not in this nvidia-ml-py: the other figures still count
            self._missing.setdefault(what, f"{what}: {name}: {type(exc).__name__}: {exc}".splitlines()[0])
        return None

    def _engine_pids(self) -> set[int]:
        if self._root is None:
            return set()
        try:
            root = psutil.Process(self._root)
            return {root.pid, *(p.pid for p in root.children(recursive=True))}
        except psutil.Error:
            return set()

    def _add(self, name: str, t: float, value: float | None) -> None:
        if value is not None:
            self.series.setdefault(name, []).append([t, round(float(value), 3)])

    def _drain_utilization(self, st: _State, end_us: int | None = None) -> None:
        if st.util_polled:
            return
        h = st.device.parent_handle
        try:
            vtype, samples = getattr(self._nv, "nvmlDeviceGetSamples")(h, GPU_UTILIZATION_SAMPLES, st.last_seen_us)
        except gpus.NvmlTimeout as exc:
            self._failure = f"unavailable: {exc}"
            return
        except Exception as exc:
            if getattr(exc, "value", None) == NOT_FOUND:
                return  # nothing newer than the last sample seen
            st.util_polled = True
            self._missing.setdefault("utilization", f"utilization: nvmlDeviceGetSamples: {type(exc).__name__}: "
                                                    f"{exc}; polled nvmlDeviceGetUtilizationRates instead")
            return
        value_field = VALUE_FIELDS.get(int(vtype), "uiVal")
        for s in sorted(samples, key=lambda s: int(s.timeStamp)):  # a ring buffer: not promised in time order
            ts = int(s.timeStamp)
            if ts <= st.last_seen_us:
                continue
            st.last_seen_us = ts
            if end_us is None or ts <= end_us:
                st.util_points.append((ts, float(getattr(s.sampleValue, value_field))))

    def _poll(self, end_us: int | None = None) -> None:
        t = round(time.perf_counter() - self._t0, 3)
        pids = self._engine_pids()
        for i, st in enumerate(self._states):
            if self._failure:
                return
            d, nv, p = st.device, self._nv, f"gpu{i}."
            st.polls += 1
            mem = self._read("device memory", "nvmlDeviceGetMemoryInfo", d.handle)
            self._add(p + "memory_used_mib", t, mem.used / 2**20 if mem is not None else None)
            if self._root is not None:
                procs = self._read("engine memory", "nvmlDeviceGetComputeRunningProcesses", d.handle)
                mine = [q for q in procs or () if int(q.pid) in pids]
                self._foreign.update(int(q.pid) for q in procs or () if int(q.pid) not in pids)
                if any(getattr(q, "usedGpuMemory", None) is None for q in mine):
                    self._missing.setdefault("engine memory", "engine memory: NVML gives no per-process memory "
                                                              "(usedGpuMemory unavailable) on this device")
                elif mine:
                    self._pids_seen.update(int(q.pid) for q in mine)
                    self._add(p + "engine_memory_mib", t, sum(q.usedGpuMemory for q in mine) / 2**20)
            watts = self._read("power", "nvmlDeviceGetPowerUsage", d.parent_handle)
            self._add(p + "power_w", t, watts / 1000.0 if watts is not None else None)  # mW -> W
            self._add(p + "sm_clock_mhz", t, self._read("clocks", "nvmlDeviceGetClockInfo", d.parent_handle,
                                                        getattr(nv, "NVML_CLOCK_SM", 1)))
            self._add(p + "mem_clock_mhz", t, self._read("clocks", "nvmlDeviceGetClockInfo", d.parent_handle,
                                                         getattr(nv, "NVML_CLOCK_MEM", 2)))
            self._add(p + "temperature_c", t, self._read("temperature", "nvmlDeviceGetTemperature", d.parent_handle,
                                                         getattr(nv, "NVML_TEMPERATURE_GPU", TEMPERATURE_GPU)))
            mask = self._clock_event_reasons(d.parent_handle)
            for name in reason_names(int(mask)) if mask is not None else ():
                st.reasons[name] = st.reasons.get(name, 0) + 1
            self._drain_utilization(st, end_us)
            if st.util_polled:
                util = self._read("utilization", "nvmlDeviceGetUtilizationRates", d.parent_handle)
                if util is not None:
                    st.util_points.append((int(time.time() * 1e6), float(util.gpu)))

    def _clock_event_reasons(self, handle) -> int | None:
        """The current clock-event (throttle) reasons mask: the current name, else the older one (drivers
        before 535 have only ``...ClocksThrottleReasons``); the one that answered is kept."""
        for name in self._reasons_calls:
            mask = self._read("clock event reasons", name, handle)
            if mask is not None or self._failure:
                self._reasons_calls = [name]
                self._missing.pop("clock event reasons", None)
                return mask
        return None

    # -- the window -----------------------------------------------------------------------------------------
    def start_window(self) -> None:
        """Read the energy counters first, then mark the window start (NVML timestamps are Unix-epoch µs).
        The first poll is the recorder's."""
        with self._lock:
            for st in self._states:
                st.energy_start_mj = self._read("energy", "nvmlDeviceGetTotalEnergyConsumption",
                                                st.device.parent_handle)
            self._t0 = time.perf_counter()
            self._start_us = int(time.time() * 1e6)
            for st in self._states:
                st.last_seen_us = self._start_us  # the buffer's older samples belong to before the window

    def sample(self) -> dict[str, float]:
        with self._lock:
            if not self._failure:
                self._poll()
        return {}  # kept in self.series (see the class docstring)

    def end_window(self, lock_timeout_s: float = 15.0) -> dict[str, list[list[float]]]:
        """Close the window: energy first, then a last poll with the buffer cut at the window's end;
        sets :attr:`record`, returns the series."""
        if not self._lock.acquire(timeout=lock_timeout_s):  # a poll still inside a call: bounded, but be sure
            self._failure = self._failure or "unavailable: telemetry poll did not return"
        else:
            try:
                ends = [self._read("energy", "nvmlDeviceGetTotalEnergyConsumption", st.device.parent_handle)
                        for st in self._states]
                end_us = int(time.time() * 1e6)
                if not self._failure:
                    self._poll(end_us=end_us)
            finally:
                self._lock.release()
        if self._failure:
            self.record = GpuTelemetry(status=self._failure,
                                       devices=[GpuDeviceTelemetry(index=i, uuid=d.uuid) for i, d in enumerate(self.devices)])
            self.series = {}
            return {}
        self.record = self._build(ends)
        return self.series

    def _build(self, ends: list[int | None]) -> GpuTelemetry:
        out, notes, parents_energy = [], list(self._missing.values()), {}
        for i, (st, end) in enumerate(zip(self._states, ends)):
            energy = None
            if st.energy_start_mj is not None and end is not None:
                if end >= st.energy_start_mj:
                    energy = (end - st.energy_start_mj) / 1000.0  # mJ -> J
                    parents_energy[st.device.parent_uuid or st.device.uuid] = energy
                else:
                    notes.append(f"gpu{i}: energy counter went backwards (driver reloaded?): no energy")
            util = [v for _, v in st.util_points]
            if not util and not st.util_polled:
                notes.append(f"gpu{i}: no utilization sample in the window (NVML samples every 1/6 s to 1 s)")
            series = {k.split(".", 1)[1]: [v for _, v in pts] for k, pts in self.series.items() if k.startswith(f"gpu{i}.")}
            out.append(GpuDeviceTelemetry(
                index=i, uuid=st.device.uuid,
                engine_memory_mib_max=_max(series.get("engine_memory_mib")),
                device_memory_mib_max=_max(series.get("memory_used_mib")),
                utilization_pct_mean=round(sum(util) / len(util), 2) if util else None,
                utilization_samples=len(util),
                utilization_source=("polled" if st.util_polled else "sample buffer") if util else None,
                energy_j=round(energy, 3) if energy is not None else None,
                power_w_mean=_mean(series.get("power_w")),
                sm_clock_mhz_min=_min(series.get("sm_clock_mhz")), sm_clock_mhz_mean=_mean(series.get("sm_clock_mhz")),
                mem_clock_mhz_mean=_mean(series.get("mem_clock_mhz")),
                temperature_c_max=_max(series.get("temperature_c")),
                clock_event_reasons={k: round(n / st.polls, 3) for k, n in sorted(st.reasons.items())} if st.polls else {},
            ))
            if st.util_points:
                self.series[f"gpu{i}.utilization_pct"] = [[round((ts - self._start_us) / 1e6, 3), v]
                                                          for ts, v in st.util_points]
        if self._root is not None and not self._pids_seen:
            seen = f"NVML lists other processes ({', '.join(map(str, sorted(self._foreign)[:8]))}); a container " \
                   "without the host PID namespace?" if self._foreign else "NVML lists no compute process"
            notes.append(f"engine memory: none of the engine's processes holds memory on its GPUs: {seen}")
        total = round(sum(parents_energy.values()), 3) if len(parents_energy) == len({
            st.device.parent_uuid or st.device.uuid for st in self._states}) else None
        return GpuTelemetry(engine_pids=sorted(self._pids_seen), energy_j=total, devices=out, notes=notes)

    def close(self) -> None:
        gpus.shutdown(self._nv)


def _max(values):
    return round(max(values), 3) if values else None


def _min(values):
    return round(min(values), 3) if values else None


def _mean(values):
    return round(sum(values) / len(values), 3) if values else None


def engine_gpu_sampler(visible: str | None, root_pid: int | None, nvml=None,
                       timeout_s: float | None = None) -> EngineGpuSampler | None:
    """A sampler of the engine's GPUs when a GPU is usable here, else None (CPU machines, a bad selection)."""
    try:
        nv = gpus.load_nvml(nvml, timeout_s)
    except gpus.NvmlUnavailable:
        return None
    try:
        devices = gpus.engine_devices(nv, visible)
    except Exception:
        gpus.shutdown(nv)
        return None
    if not devices:
        gpus.shutdown(nv)
        return None
    return EngineGpuSampler(nv, devices, root_pid)


ENDPOINT_TELEMETRY = "unavailable: an endpoint perfgate did not start: its GPUs are not this runner's"


def endpoint_telemetry() -> GpuTelemetry:
    """The record of a trial against an endpoint: nothing read from this runner's GPUs."""
    return GpuTelemetry(status=ENDPOINT_TELEMETRY)


def energy_metrics(record: GpuTelemetry | None, output_tokens: int) -> dict[str, float]:
    """``gpu_energy_j`` and ``gpu_energy_j_per_output_token`` (docs/metrics.md) of a trial; sets the record's J/token."""
    if record is None or record.status != "ok" or record.energy_j is None:
        return {}
    out = {"gpu_energy_j": record.energy_j}
    if output_tokens > 0:
        record.energy_j_per_output_token = round(record.energy_j / output_tokens, 6)
        out["gpu_energy_j_per_output_token"] = record.energy_j_per_output_token
    return out
