"""Test double for NVML (the ``pynvml`` module of nvidia-ml-py): this machine has no GPU.

:class:`FakeNvml` answers the calls perfgate makes (``perfgate.engines.gpus``,
telemetry, hardware record, preflight) from a list of :class:`FakeGpu`, with
NVML's units (bytes, milliwatts, MHz, the CUDA version as ``major*1000 +
minor*10``). ``FakeNvml(fail=...)`` makes ``nvmlInit`` raise like a machine
without a driver. It checks nothing about real devices; the code under test
is the mapping, the units and the decisions made from these answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace


class NVMLError(Exception):
    pass


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
    power_limit_mw: int = 300_000
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, bytes)
    migs: list["FakeGpu"] = field(default_factory=list)


class FakeNvml:
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu] | None = None, driver: str = "580.65.06", cuda: int = 13000,
                 fail: str | None = None):
        self.gpus = gpus if gpus is not None else [FakeGpu("GPU-aaaa-0000")]
        self.driver, self.cuda, self.fail = driver, cuda, fail
        self.initialized = 0
        self.shutdown = False

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

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=h.util, memory=40)

    def nvmlDeviceGetMaxClockInfo(self, h, which):
        return h.max_sm_mhz if which == self.NVML_CLOCK_SM else h.max_mem_mhz

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
