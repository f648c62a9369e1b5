"""Test double for NVML (the ``pynvml`` module of nvidia-ml-py): this machine has no GPU.

:class:`FakeNvml` answers the calls perfgate makes (``perfgate.engines.gpus``,
GPU telemetry, hardware record, preflight) from a list of :class:`FakeGpu`, with
NVML's units and shapes (bytes, milliwatts, MHz, °C, the CUDA version as
``major*1000 + minor*10``, errors carrying NVML's codes in ``.value``), and
models the parts of the driver whose behaviour perfgate depends on:

* the utilization **sample buffer** (``nvmlDeviceGetSamples``): one sample every
  ``sample_period_s`` of real time, timestamped in Unix-epoch microseconds, only
  the last ``buffer_len`` kept, values from ``util_at(unix_time)``, returned in
  ring order (not promised in time order); samples not newer than
  ``lastSeenTimeStamp`` are not returned, and none at all raises
  ``NVML_ERROR_NOT_FOUND`` as the driver does;
* the **total-energy counter** (mJ since "driver load"): ``power_mw`` integrated
  over real time, so it is monotonic and agrees with the power reading;
* per-process memory (``processes``: real PIDs with the bytes they hold);
* ``hang={"nvmlDeviceGetPowerUsage", ...}``: those calls block (like a GPU that
  fell off the bus) until :meth:`FakeNvml.release` is called;
* ``FakeNvml(fail=...)``: ``nvmlInit`` raises like a machine without a driver.

It checks nothing about real devices; the code under test is the mapping, the
units, the windowing and the decisions made from these answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NOT_FOUND = 6


class NVMLError(Exception):
    """Like pynvml's: the NVML return code in ``.value``."""

    def __init__(self, value: int | str = 999):
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {3: "Not Supported", 6: "Not Found"}.get(self.value, str(self.value))  # type: ignore[arg-type]


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA A10G"
    memory_total_mib: float = 23028
    used_mib: float = 1536
    power_mw: int = 142_500
    util: int = 87
    max_sm_mhz: int = 1710
    max_mem_mhz: int = 6251
    sm_mhz: int = 1695
    mem_mhz: int = 6251
    temperature_c: int = 61
    clock_event_reasons: int = 0x4  # SwPowerCap
    power_limit_mw: int = 300_000
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes; None: not available)
    migs: list["FakeGpu"] = field(default_factory=list)
    util_at: Callable[[float], int] | None = None  # unix time -> %, default: ``util`` always
    sample_period_s: float = 1 / 6  # NVML samples GPU utilization every 1/6 s to 1 s, by product
    buffer_len: int = 100
    samples_supported: bool = True
    energy_origin_s: float = field(default_factory=time.time)  # the counter's zero
    energy_base_mj: int = 9_876_543_210  # counter value at energy_origin_s (it counts since driver load)


class FakeNvml:
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    NVML_GPU_UTILIZATION_SAMPLES = 1
    NVML_VALUE_TYPE_UNSIGNED_INT = 1
    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu] | None = None, driver: str = "580.65.06", cuda: int = 13000,
                 fail: str | None = None, hang: set[str] | frozenset[str] = frozenset()):
        self.gpus = gpus if gpus is not None else [FakeGpu("GPU-aaaa-0000")]
        self.driver, self.cuda, self.fail = driver, cuda, fail
        self.initialized = 0
        self.shutdown = False
        self.calls: list[str] = []
        self._hang = set(hang)
        self._released = threading.Event()

    def release(self) -> None:
        """Let every hanging call return (test teardown: no thread stays blocked)."""
        self._released.set()

    def __getattribute__(self, name: str):
        if name.startswith("nvml"):
            object.__getattribute__(self, "calls").append(name)
            if name in object.__getattribute__(self, "_hang"):
                real = object.__getattribute__(self, name)

                def hanging(*args):
                    object.__getattribute__(self, "_released").wait(60)
                    return real(*args)
                return hanging
        return object.__getattribute__(self, name)

    def nvmlInit(self):
        if self.fail:
            raise NVMLError(self.fail)
        self.initialized += 1

    def nvmlShutdown(self):
        self.shutdown = True

    def nvmlSystemGetDriverVersion(self):
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self):
        return self.cuda

    def nvmlDeviceGetCount(self):
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):
        return self.gpus[i]

    def nvmlDeviceGetUUID(self, h):
        return h.uuid

    def nvmlDeviceGetName(self, h):
        return h.name.encode()  # older nvidia-ml-py returns bytes

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(used=h.used_mib * 2**20, total=h.memory_total_mib * 2**20)

    def nvmlDeviceGetPowerUsage(self, h):
        return h.power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        return h.energy_base_mj + int(h.power_mw * (time.time() - h.energy_origin_s))  # mW × s = mJ

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=self._util(h, time.time()), memory=40)

    def _util(self, h, t: float) -> int:
        return h.util_at(t) if h.util_at is not None else h.util

    def nvmlDeviceGetSamples(self, h, sampling_type, last_seen_us):
        if not h.samples_supported or sampling_type != self.NVML_GPU_UTILIZATION_SAMPLES:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        period_us = int(h.sample_period_s * 1e6)
        newest = int(time.time() * 1e6) // period_us
        first = max(newest - h.buffer_len + 1, int(h.energy_origin_s * 1e6) // period_us + 1)
        samples = [SimpleNamespace(timeStamp=k * period_us,
                                   sampleValue=SimpleNamespace(uiVal=self._util(h, k * period_us / 1e6)))
                   for k in range(first, newest + 1) if k * period_us > last_seen_us]
        if not samples:
            raise NVMLError(NVML_ERROR_NOT_FOUND)
        # A ring buffer read from its first slot: sample k sits in slot k % buffer_len, so not in time order.
        samples.sort(key=lambda s: (s.timeStamp // period_us) % h.buffer_len)
        return self.NVML_VALUE_TYPE_UNSIGNED_INT, samples

    def nvmlDeviceGetClockInfo(self, h, which):
        return h.sm_mhz if which == self.NVML_CLOCK_SM else h.mem_mhz

    def nvmlDeviceGetMaxClockInfo(self, h, which):
        return h.max_sm_mhz if which == self.NVML_CLOCK_SM else h.max_mem_mhz

    def nvmlDeviceGetTemperature(self, h, sensor):
        return h.temperature_c

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return h.clock_event_reasons

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return h.power_limit_mw

    def nvmlDeviceGetMigMode(self, h):
        return (1, 1) if h.migs else (0, 0)

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return len(h.migs)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, j):
        return h.migs[j]

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in h.processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        return []
