"""Engine adapters and their shared lifecycle; adapters are found by kind in perfgate.engines.registry."""

from __future__ import annotations

from perfgate.config.matrix import EngineConfig
from perfgate.engines.base import (
    EXTERNAL_CAPABILITIES,
    EngineAdapter,
    EngineCapabilities,
    LaunchPlan,
    ModelRef,
)
from perfgate.engines.registry import AdapterLoadError, UnknownEngineError, adapter_kinds, get_adapter

__all__ = ["EXTERNAL_CAPABILITIES", "AdapterLoadError", "EngineAdapter", "EngineCapabilities", "EngineConfig",
           "LaunchPlan", "ModelRef", "UnknownEngineError", "adapter_kinds", "get_adapter"]
