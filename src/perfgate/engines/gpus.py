"""Which GPUs an engine uses, read through NVML: the one place perfgate asks the driver about devices.

An engine sees the GPUs ``CUDA_VISIBLE_DEVICES`` names (indices, ``GPU-<uuid>``
or ``MIG-<uuid>``, each possibly a unique prefix), in that order; NVML numbers
devices its own way. :func:`map_visible_devices` (pure) turns the variable into
NVML UUIDs, so telemetry and the hardware record follow the engine's devices,
and ``gpu0`` in a result is the engine's ``cuda:0``. Integer entries are taken
as NVML (PCI bus) order, which is CUDA's order under
``CUDA_DEVICE_ORDER=PCI_BUS_ID``; CUDA's default "fastest first" order can
differ on a box with mixed GPU models (preflight warns). UUIDs are exact either way.

NVML is passed in as a module-like object (``pynvml`` from nvidia-ml-py by
default) so tests use a documented test double (``tests/unit/fake_nvml.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field


class GpuSelectionError(ValueError):
    """CUDA_VISIBLE_DEVICES names a device this machine does not have; the message names the entry."""


class NvmlUnavailable(RuntimeError):
    """No NVIDIA GPU can be used here (no library, no driver, no device); the message says which."""


@dataclass(frozen=True)
class GpuDevice:
    """One device an engine can use: a whole GPU, or a MIG instance of one."""

    uuid: str
    name: str
    index: int  # NVML index of the (parent) GPU
    memory_total_mib: float | None = None
    parent_uuid: str | None = None  # set for a MIG instance
    handle: object = field(default=None, compare=False, repr=False)
    parent_handle: object = field(default=None, compare=False, repr=False)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def map_visible_devices(visible: str | None, gpus: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """The UUIDs of the devices ``CUDA_VISIBLE_DEVICES=visible`` exposes, in the engine's order.

    ``gpus``: ``(gpu uuid, [mig uuids])`` per GPU in NVML index order. ``None``
    (unset) exposes every GPU; ``""`` none. Entries are integers (NVML index),
    ``GPU-…`` or ``MIG-…`` UUIDs or unique prefixes of them. Anything else, an
    index out of range or an ambiguous prefix raises :class:`GpuSelectionError`
    (CUDA would silently drop it and every entry after it).
    """
    physical = [g for g, _ in gpus]
    if visible is None:
        return list(physical)
    out: list[str] = []
    migs = [m for _, ms in gpus for m in ms]
    for raw in visible.split(","):
        entry = raw.strip()
        if not entry:
            if visible.strip():
                raise GpuSelectionError(f"CUDA_VISIBLE_DEVICES={visible!r}: empty entry")
            continue
        if entry.lstrip("-").isdigit():
            i = int(entry)
            if not 0 <= i < len(physical):
                raise GpuSelectionError(f"CUDA_VISIBLE_DEVICES={visible!r}: no GPU with index {i} "
                                        f"(this machine has {len(physical)})")
            uuid = physical[i]
        elif entry.startswith(("GPU-", "MIG-")):
            pool = physical if entry.startswith("GPU-") else migs
            hits = [u for u in pool if u.startswith(entry)]
            if len(hits) != 1:
                what = "no device" if not hits else f"{len(hits)} devices"
                raise GpuSelectionError(f"CUDA_VISIBLE_DEVICES={visible!r}: {entry!r} matches {what}")
            uuid = hits[0]
        else:
            raise GpuSelectionError(f"CUDA_VISIBLE_DEVICES={visible!r}: {entry!r} is neither an index nor a "
                                    "GPU-/MIG- UUID")
        if uuid in out:
            raise GpuSelectionError(f"CUDA_VISIBLE_DEVICES={visible!r}: {entry!r} names a device twice")
        out.append(uuid)
    return out


def load_nvml(nvml=None):
    """``nvml`` initialised (``pynvml`` by default); :class:`NvmlUnavailable` with the reason when it cannot be."""
    try:
        if nvml is None:
            import pynvml as nvml  # nvidia-ml-py
        nvml.nvmlInit()
    except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, ...
        raise NvmlUnavailable(f"NVML: {type(exc).__name__}: {str(exc) or 'no detail'}".splitlines()[0]) from None
    return nvml


def all_devices(nvml) -> list[GpuDevice]:
    """Every GPU (and each MIG instance of a GPU in MIG mode), NVML index order."""
    out = []
    for i in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        uuid, name = _text(nvml.nvmlDeviceGetUUID(h)), _text(nvml.nvmlDeviceGetName(h))
        out.append(GpuDevice(uuid, name, i, _memory_mib(nvml, h), handle=h, parent_handle=h))
        try:
            mig_on = nvml.nvmlDeviceGetMigMode(h)[0]
        except Exception:
            mig_on = False
        if mig_on:
            for j in range(nvml.nvmlDeviceGetMaxMigDeviceCount(h)):
                try:
                    m = nvml.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
                except Exception:
                    continue
                out.append(GpuDevice(_text(nvml.nvmlDeviceGetUUID(m)), name, i, _memory_mib(nvml, m),
                                     parent_uuid=uuid, handle=m, parent_handle=h))
    return out


def _memory_mib(nvml, handle) -> float | None:
    try:
        return nvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20
    except Exception:
        return None


def engine_devices(nvml, visible: str | None = None, use_env: bool = True) -> list[GpuDevice]:
    """The devices an engine started with ``CUDA_VISIBLE_DEVICES=visible`` uses (``os.environ``'s when not given)."""
    if visible is None and use_env:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = all_devices(nvml)
    table = [(d.uuid, [m.uuid for m in devices if m.parent_uuid == d.uuid]) for d in devices if d.parent_uuid is None]
    by_uuid = {d.uuid: d for d in devices}
    return [by_uuid[u] for u in map_visible_devices(visible, table)]


def driver_versions(nvml) -> tuple[str | None, str | None]:
    """(driver version, e.g. "580.65.06"; highest CUDA version the driver supports, e.g. "13.0")."""
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
    except Exception:
        driver = None
    try:
        v = int(nvml.nvmlSystemGetCudaDriverVersion())
        cuda = f"{v // 1000}.{(v % 1000) // 10}"
    except Exception:
        cuda = None
    return driver, cuda


def busy_processes(nvml, device: GpuDevice) -> list[tuple[int, float]]:
    """(pid, MiB) of processes holding memory on ``device`` (compute and graphics)."""
    found: dict[int, float] = {}
    for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        try:
            procs = getattr(nvml, getter)(device.handle)
        except Exception:
            continue
        for p in procs:
            used = getattr(p, "usedGpuMemory", None)
            found[int(p.pid)] = (used or 0) / 2**20
    return sorted(found.items())


def shutdown(nvml) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass
