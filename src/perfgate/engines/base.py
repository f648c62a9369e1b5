"""What an engine adapter must provide, and the configuration it is built from.

An adapter knows one engine's command line, environment and version probe; the
lifecycle (spawn, readiness, teardown) is shared in :mod:`perfgate.engines.server`
so vLLM, SGLang, the reference simulator and anything added later behave the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from perfgate.config.matrix import EngineConfig, ModelRef


def has_flag(flags: list[str] | tuple[str, ...], *names: str) -> bool:
    """``--name value`` or ``--name=value`` is among ``flags``."""
    return any(f.partition("=")[0] in names for f in flags)


def model_args(model: ModelRef, config: EngineConfig, context_flag: str) -> list[str]:
    """The model's defaults as engine arguments, each left out when the engine's own flags set it."""
    out: list[str] = []
    if model.max_model_len and not has_flag(config.flags, context_flag):
        out += [context_flag, str(model.max_model_len)]
    if model.dtype and not has_flag(config.flags, "--dtype"):
        out += ["--dtype", model.dtype]
    return [*out, *model.engine_args]


def tensor_parallel_args(config: EngineConfig, flag: str) -> list[str]:
    """``flag N`` for a model sharded over N > 1 GPUs (nothing at 1, the engines' default)."""
    n = config.tensor_parallel_size
    return [flag, str(n)] if n > 1 and not has_flag(config.flags, flag, "--tensor-parallel-size", "--tp-size") else []


@dataclass
class LaunchPlan:
    """Everything needed to spawn an engine process; recorded verbatim in results."""

    command: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to os.environ
    health_path: str = "/health"


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine's API offers beyond plain OpenAI compatibility; callers ask this, never the engine's name."""

    token_ids_in_stream: bool = False  # honours "return_token_ids": exact per-chunk token counts
    tokenize: Literal["none", "prompt-or-messages", "prompt"] = "none"  # /tokenize body shape it accepts
    cache_reset: tuple[str, str] | None = None  # (method, path) that empties the prefix cache
    metrics_prefix: str | None = None  # the engine's Prometheus name prefix on /metrics


EXTERNAL_CAPABILITIES = EngineCapabilities(tokenize="prompt-or-messages")
"""An endpoint perfgate did not start: /tokenize is tried (it may 404); nothing else is assumed."""


@runtime_checkable
class EngineAdapter(Protocol):
    """One engine's specifics. Implementations live in perfgate.engines.<name>."""

    name: str
    #: distribution whose version identifies the engine in a provisioned venv
    distribution: str | None
    capabilities: EngineCapabilities

    def launch_plan(
        self, python: Path, model: ModelRef, host: str, port: int, config: EngineConfig
    ) -> LaunchPlan: ...

    def version_paths(self) -> tuple[str, ...]:
        """HTTP GET paths that report the engine version, tried in order."""
        ...
