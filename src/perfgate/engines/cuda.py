"""The CUDA runtime an engine's build needs, and the driver that runs it, read before anything is installed.

From what is or will be installed: the venv's torch, a CUDA tag in the wheel or an index, else a table
of releases whose every row names its source (an engine version no row covers is "unknown", never
guessed). Preflight compares the need with the driver's CUDA (perfgate.engines.preflight.check_cuda).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from perfgate.config.matrix import EngineConfig
from perfgate.engines.provision import InstallOptions, software_of, venv_dir_for
from perfgate.engines.specs import ProvisionError, parse_spec, spec_version


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


def version_parts(v: str) -> tuple[int, ...]:
    """A driver or CUDA version as numbers per dot-part (NVML strings are not always PEP 440)."""
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
            found.append((version_parts(_cuda_of_tag(m.group(0))), m.group(0), where))
    if not found:
        return None
    _, tag, where = max(found)
    return _cuda_of_tag(tag), f"the {tag} tag of the engine's {where}"


def _dist_and_version(engine: EngineConfig) -> tuple[str, str | None]:
    """The spec's distribution (normalised) and pinned version, by the one spec parser ("", None: none)."""
    try:
        return (canonicalize_name(parse_spec(engine.spec).name), spec_version(engine.spec)) if engine.spec \
            else ("", None)
    except ProvisionError:
        return "", None


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
    fits = [cuda for cuda, least in CUDA_MIN_DRIVER.items() if version_parts(driver) >= version_parts(least)]
    return max(fits, key=version_parts) if fits else None


def index_that_fits(engine: EngineConfig, have: str) -> str | None:
    """The engine release's CUDA-variant index that runs on a driver of CUDA ``have`` (same major or
    older), phrased for the matrix entry; None when the project publishes none."""
    row = cuda_build_of(engine)
    if row is None or engine.wheel or engine.python:
        return None
    fits = [t for t in row.variants if version_parts(_cuda_of_tag(t))[0] <= version_parts(have)[0]]
    if not fits:
        return None
    tag = max(fits, key=lambda t: version_parts(_cuda_of_tag(t)))
    _, version = _dist_and_version(engine)
    return (f"{row.engine} {version}'s {tag} variant index (CUDA {_cuda_of_tag(tag)}) in the engine's "
            f"extra_index_urls")
