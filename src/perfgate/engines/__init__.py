"""Engine adapters and their shared lifecycle."""

from __future__ import annotations

from .base import EngineAdapter, EngineConfig, LaunchPlan, ModelRef
from .sglang import SglangAdapter
from .sim import SimAdapter
from .vllm import VllmAdapter

ADAPTERS: dict[str, EngineAdapter] = {
    "vllm": VllmAdapter(),
    "sglang": SglangAdapter(),
    "sim": SimAdapter(),
}
KINDS = (*ADAPTERS, "external")


class UnknownEngineError(ValueError):
    pass


def get_adapter(kind: str) -> EngineAdapter:
    try:
        return ADAPTERS[kind]
    except KeyError:
        raise UnknownEngineError(
            f"unknown engine kind {kind!r}; known: {', '.join(KINDS)}"
        ) from None


__all__ = ["ADAPTERS", "KINDS", "EngineAdapter", "EngineConfig", "LaunchPlan", "ModelRef", "UnknownEngineError", "get_adapter"]
