"""The environment fingerprint recorded with every result.

Hardware comes from NVML when a GPU and ``nvidia-ml-py`` are present, else
from the CPU; the perfgate version and git commit identify the measuring code.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
from pathlib import Path

import psutil

from . import __version__
from .results import Hardware


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def detect_hardware() -> Hardware:
    gpu_name = driver = None
    gpu_count = 0
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        try:
            gpu_count = pynvml.nvmlDeviceGetCount()
            if gpu_count:
                name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
                gpu_name = name.decode() if isinstance(name, bytes) else name
                drv = pynvml.nvmlSystemGetDriverVersion()
                driver = drv.decode() if isinstance(drv, bytes) else drv
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no library, no driver, no device: a CPU run
        gpu_count = 0
    return Hardware(
        accelerator=gpu_name or "cpu",
        gpu_driver=driver,
        gpu_count=gpu_count,
        cpu_model=cpu_model(),
        cpu_count=os.cpu_count(),
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
    )


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
