"""A live A/B on shared GPUs: size each side's memory fraction so that both fit (docs/engines.md).

Both sides of a live A/B stay resident (the side not measured is paused; its GPU memory stays taken), and the
shipped GPU engines each take 0.85 of the GPU, so the pair cannot boot on one GPU as configured. The A/B
gives each side ``min(its own fraction, (1 - AB_MARGIN) / 2)`` through the adapter's ``gpu_memory_fraction``
flag (vLLM ``--gpu-memory-utilization``, SGLang ``--mem-fraction-static``), before preflight checks the pair and
before either side boots; the result records the flags a side ran with (the launch plan's). Sides on disjoint
GPUs (``CUDA_VISIBLE_DEVICES`` in each engine's env) keep their own fractions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace

from perfgate.config.engines import EngineConfig
from perfgate.engines.registry import get_adapter

AB_MARGIN = 0.05
"""The share of the GPU's memory neither side takes: CUDA contexts, the other side's non-torch allocations."""


def _memory_fraction(engine: EngineConfig) -> tuple[str, float] | None:
    """The adapter's GPU-memory flag and default (None: an endpoint, or an engine that needs no GPU)."""
    return None if engine.kind == "external" else get_adapter(engine.kind).gpu_memory_fraction


def needs_gpu(engine: EngineConfig, hardware: str = "gpu") -> bool:
    """A local GPU engine (its adapter sizes GPU memory) on a gpu run; vllm-cpu and endpoints need none."""
    return hardware == "gpu" and _memory_fraction(engine) is not None \
        and not (engine.spec or "").startswith("vllm-cpu")


def fraction_in_use(engine: EngineConfig) -> float:
    """The share of GPU memory ``engine`` takes: its flag's value, else the adapter's default."""
    flag, default = _memory_fraction(engine) or ("", 0.9)
    return float((flag_value(engine.flags, [flag]) if flag else None) or default)


def flag_value(flags: Iterable[str], names: Iterable[str]) -> str | None:
    flags, names = list(flags), set(names)
    for i, f in enumerate(flags):
        key, _, value = f.partition("=")
        if key in names:
            return value or (flags[i + 1] if i + 1 < len(flags) else None)
    return None


def _visible(engine: EngineConfig) -> frozenset[str] | None:
    value = engine.env_dict.get("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES"))
    return None if value is None else frozenset(v.strip() for v in value.split(",") if v.strip())


def share_gpus(a: EngineConfig, b: EngineConfig) -> bool:
    """Whether the two sides may land on the same GPU: both use one, and their visible devices are not
    stated disjoint (unstated: the runner's GPUs, shared)."""
    if not (needs_gpu(a) and needs_gpu(b)):
        return False
    va, vb = _visible(a), _visible(b)
    return va is None or vb is None or bool(va & vb)


def _with_fraction(engine: EngineConfig, fraction: float) -> EngineConfig:
    flag = (_memory_fraction(engine) or ("",))[0]
    flags, out, skip = list(engine.flags), [], False
    for i, f in enumerate(flags):
        if skip:
            skip = False
            continue
        key, eq, _ = f.partition("=")
        if key == flag:
            skip = not eq and i + 1 < len(flags)  # "--flag value": drop the value too
            continue
        out.append(f)
    return replace(engine, flags=(*out, flag, f"{fraction:g}"))


def size_for_ab(a: EngineConfig, b: EngineConfig, margin: float = AB_MARGIN
                ) -> tuple[EngineConfig, EngineConfig, list[str]]:
    """``a`` and ``b`` with memory fractions that fit together on shared GPUs, and a note per side changed
    (``vllm-gpu: --gpu-memory-utilization 0.85 -> 0.475 (live A/B: both sides resident on shared GPUs)``)."""
    if not share_gpus(a, b):
        return a, b, []
    cap = round((1.0 - margin) / 2, 4)
    sides, notes = [], []
    for side in (a, b):
        own = fraction_in_use(side)
        if own > cap:
            flag = (_memory_fraction(side) or ("",))[0]
            was = flag_value(side.flags, [flag])
            notes.append(f"{side.id}: {flag} {was or f'{own:g} (default)'} -> {cap:g} (live A/B: both sides "
                         "resident on shared GPUs)")
            side = _with_fraction(side, cap)
        sides.append(side)
    return sides[0], sides[1], notes
