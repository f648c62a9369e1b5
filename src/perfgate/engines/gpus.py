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
:func:`load_nvml` hands it back wrapped in :class:`BoundedNvml`, so every NVML
call anywhere in perfgate has a deadline: a GPU that fell off the bus makes a
call hang in the driver, and that must cost one figure, not the suite.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field


class GpuSelectionError(ValueError):
    """CUDA_VISIBLE_DEVICES names a device this machine does not have; the message names the entry."""


class NvmlUnavailable(RuntimeError):
    """No NVIDIA GPU can be used here (no library, no driver, no device); the message says which."""


class NvmlTimeout(RuntimeError):
    """An NVML call overran its deadline; every later call on the same handle fails at once with this."""


NVML_CALL_TIMEOUT_S = 5.0
"""Deadline of one NVML call (a healthy call takes well under 10 ms; ``nvmlInit`` gets
:data:`NVML_INIT_TIMEOUT_S`: without persistence mode it loads the driver state of every GPU)."""
NVML_INIT_TIMEOUT_S = 30.0


class BoundedNvml:
    """NVML whose ``nvml*`` functions run on one daemon worker thread, each given up after ``timeout_s``.

    Constants and exception classes pass through. After one overrun the worker is
    presumed stuck in the driver (it is left behind: a daemon thread never blocks
    interpreter exit) and every later call raises :class:`NvmlTimeout` at once,
    naming the call that hung, instead of queueing behind it.
    """

    def __init__(self, nvml, timeout_s: float | None = None):
        self._nvml = nvml
        self.timeout_s = NVML_CALL_TIMEOUT_S if timeout_s is None else timeout_s
        self.lost: str | None = None  # "NVML call timed out: <name> after <s> s" once a call overran
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        value = getattr(self._nvml, name)
        if not (name.startswith("nvml") and callable(value)):
            return value
        return lambda *args, **kwargs: self.call(name, value, args, kwargs)

    def call(self, name: str, fn, args=(), kwargs=None, timeout_s: float | None = None):
        if self.lost:
            raise NvmlTimeout(self.lost)
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="perfgate-nvml", daemon=True)
                self._worker.start()
        done, box = threading.Event(), {}
        self._jobs.put((fn, args, kwargs or {}, box, done))
        limit = self.timeout_s if timeout_s is None else timeout_s
        if not done.wait(limit):
            self.lost = f"NVML call timed out: {name} after {limit:g} s"
            raise NvmlTimeout(self.lost)
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, kwargs, box, done = job
            try:
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller, whatever it is
                box["error"] = exc
            done.set()

    def close(self) -> None:
        """End the worker (after ``nvmlShutdown``); a stuck worker is left where it is."""
        if self._worker is not None and not self.lost:
            self._jobs.put(None)


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


def load_nvml(nvml=None, timeout_s: float | None = None) -> BoundedNvml:
    """``nvml`` (``pynvml`` by default) initialised and wrapped in :class:`BoundedNvml`;
    :class:`NvmlUnavailable` with the reason when it cannot be (an ``nvmlInit`` that hangs included)."""
    if isinstance(nvml, BoundedNvml):
        nvml = nvml._nvml
    bounded = None
    try:
        if nvml is None:
            import pynvml as nvml  # nvidia-ml-py
        bounded = BoundedNvml(nvml, timeout_s)
        bounded.call("nvmlInit", nvml.nvmlInit, timeout_s=max(bounded.timeout_s, NVML_INIT_TIMEOUT_S))
    except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded, NvmlTimeout...
        if bounded is not None:
            bounded.close()  # its worker thread ends (unless stuck in the init that timed out)
        raise NvmlUnavailable(f"NVML: {type(exc).__name__}: {str(exc) or 'no detail'}".splitlines()[0]) from None
    return bounded


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
    """``nvmlShutdown``, unless a call already hung (it would hang too); then end the worker thread."""
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass
    if isinstance(nvml, BoundedNvml):
        nvml.close()
