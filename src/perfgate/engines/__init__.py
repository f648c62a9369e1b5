"""Engine adapters and their shared lifecycle."""

from __future__ import annotations

from perfgate.config.matrix import ENGINE_KINDS, EngineConfig
from perfgate.engines.base import (
    EXTERNAL_CAPABILITIES,
    EngineAdapter,
    EngineCapabilities,
    LaunchPlan,
    ModelRef,
)
from perfgate.engines.sglang import SglangAdapter
from perfgate.engines.sim import SimAdapter
from perfgate.engines.vllm import VllmAdapter

ADAPTERS: dict[str, EngineAdapter] = {
    "vllm": VllmAdapter(),
    "sglang": SglangAdapter(),
    "sim": SimAdapter(),
}
KINDS = ENGINE_KINDS
assert set(ADAPTERS) | {"external"} == set(ENGINE_KINDS), "an engine kind without an adapter"


class UnknownEngineError(ValueError):
    pass


def get_adapter(kind: str) -> EngineAdapter:
    try:
        return ADAPTERS[kind]
    except KeyError:
        from perfgate._suggest import did_you_mean

        raise UnknownEngineError(f"unknown engine kind {kind!r}{did_you_mean(kind, KINDS)}") from None


__all__ = ["ADAPTERS", "EXTERNAL_CAPABILITIES", "KINDS", "EngineAdapter", "EngineCapabilities", "EngineConfig", "LaunchPlan", "ModelRef", "UnknownEngineError", "get_adapter"]
