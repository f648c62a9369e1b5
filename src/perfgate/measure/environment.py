"""The environment recorded with every result: hardware, machine name and calibration, code identity.

Hardware comes from NVML when a GPU and ``nvidia-ml-py`` are present (the
GPUs the engine uses, by UUID), else from the CPU; the perfgate version and git commit identify the measuring code.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import socket
import subprocess
import time
from pathlib import Path

import psutil

from perfgate import __version__
from perfgate.schema.result import Hardware


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def detect_hardware(visible: str | None = None, nvml=None) -> Hardware:
    """The machine, and of the GPUs the engine uses (``CUDA_VISIBLE_DEVICES``, ``os.environ``'s when None):
    model, count, memory, max SM/memory clocks and the enforced power limit."""
    from perfgate.engines import gpus

    gpu_name = driver = None
    devices: list = []
    sm = mem = power = memory_mib = None
    try:
        nv = gpus.load_nvml(nvml)
    except gpus.NvmlUnavailable:  # no library, no driver, no device: a CPU run
        nv = None
    if nv is not None:
        try:
            devices = gpus.engine_devices(nv, visible)
            driver = gpus.driver_versions(nv)[0]
            if devices:
                gpu_name = " + ".join(dict.fromkeys(d.name for d in devices))
                first = devices[0]
                memory_mib = first.memory_total_mib
                sm = _nvml_int(lambda: nv.nvmlDeviceGetMaxClockInfo(first.parent_handle, nv.NVML_CLOCK_SM))
                mem = _nvml_int(lambda: nv.nvmlDeviceGetMaxClockInfo(first.parent_handle, nv.NVML_CLOCK_MEM))
                limit = _nvml_int(lambda: nv.nvmlDeviceGetEnforcedPowerLimit(first.parent_handle))
                power = limit / 1000.0 if limit is not None else None  # mW -> W
        except Exception:  # a device NVML cannot describe: record what the CPU side knows
            devices = []
        finally:
            gpus.shutdown(nv)
    return Hardware(
        accelerator=gpu_name or "cpu",
        gpu_driver=driver,
        gpu_count=len(devices),
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count(),
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
        gpu_uuids=[d.uuid for d in devices],
        gpu_memory_mib=memory_mib,
        gpu_max_sm_clock_mhz=sm,
        gpu_max_mem_clock_mhz=mem,
        gpu_power_limit_w=power,
    )


ENDPOINT_HARDWARE_ENV = "PERFGATE_ENDPOINT_HARDWARE"


def endpoint_hardware(stated: str | None = None) -> Hardware:
    """The hardware of an endpoint perfgate did not start: as the user states it (``stated``, else
    ``$PERFGATE_ENDPOINT_HARDWARE``: ``"NVIDIA H100 80GB HBM3"`` or ``"8x NVIDIA H100 80GB HBM3"``),
    else ``unknown``; never this runner's GPUs or CPU, which are not the engine's."""
    text = (stated or os.environ.get(ENDPOINT_HARDWARE_ENV) or "").strip()
    m = re.fullmatch(r"(\d+)\s*[x×]\s*(.+)", text)
    if m:
        return Hardware(accelerator=m.group(2).strip(), gpu_count=int(m.group(1)))
    return Hardware(accelerator=text, gpu_count=1) if text else Hardware(accelerator="unknown")


def _nvml_int(read) -> int | None:
    try:
        return int(read())
    except Exception:
        return None


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def host_info() -> dict[str, str]:
    return {"python": platform.python_version(), "hostname": socket.gethostname(), "perfgate_version": __version__}


MACHINE_ENV = "PERFGATE_MACHINE"


def machine_name(option: str | None = None) -> str | None:
    """The runner's name: ``--perf-machine``, else ``$PERFGATE_MACHINE``, else None (unnamed).

    Baselines are keyed by it. Two machines "of the same kind" (same CPU string,
    core count, even host name) were measured 30-100% apart, so nothing perfgate
    can read off a machine identifies it well enough to compare stored numbers:
    the user names it (CI: the runner's name). An unnamed machine writes no
    baselines and compares with none; live A/B needs no name.
    """
    name = option or os.environ.get(MACHINE_ENV) or None
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise ValueError(f"machine name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    return name


_CALIBRATION: float | None = None


def calibrate() -> float:
    """A short, fixed CPU workload's rate (million loop steps per second, best of 5): the machine's speed.

    Recorded in results and baselines so a reader can see how far apart two
    machines are; never used to rescale numbers (engine speed does not scale
    with one core's loop rate). Measured once per process (~0.1 s).
    """
    global _CALIBRATION
    if _CALIBRATION is None:
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            acc = 0
            for i in range(200_000):
                acc = (acc * 31 + i) & 0xFFFF
            best = min(best, time.perf_counter() - t0)
        _CALIBRATION = round(0.2 / best, 2)
    return _CALIBRATION
