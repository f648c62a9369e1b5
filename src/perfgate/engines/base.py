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


def revision_args(model: ModelRef, config: EngineConfig) -> list[str]:
    """``--revision REV`` for a hub model pinned to a commit (vLLM and SGLang both take it): fetched by commit,
    the cache has no ``refs/main`` for the engine to resolve offline. Beside the model path in the command,
    not among the recorded flags: the revision is the model's identity, recorded as ``model_revision``."""
    if not model.revision or Path(model.path).exists() or has_flag(config.flags, "--revision"):
        return []
    return ["--revision", model.revision]


def tensor_parallel_args(config: EngineConfig, flag: str) -> list[str]:
    """``flag N`` for a model sharded over N > 1 GPUs (nothing at 1, the engines' default)."""
    n = config.tensor_parallel_size
    return [flag, str(n)] if n > 1 and not has_flag(config.flags, flag, "--tensor-parallel-size", "--tp-size") else []


@dataclass
class LaunchPlan:
    """Everything needed to spawn an engine process; recorded verbatim in results.

    ``flags`` are the configuration arguments within ``command`` (the matrix engine's flags, then the
    model's serving defaults, its ``engine_args`` and the tensor-parallel size the adapter added): what
    a result records as the engine's flags, so the baseline fingerprint sees every argument the
    engine was given. Taken from the plan, never recomputed beside it.
    """

    command: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to os.environ
    health_path: str = "/health"
    flags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine's API offers beyond plain OpenAI compatibility; callers ask this, never the engine's name."""

    token_ids_in_stream: bool = False  # honours "return_token_ids": exact per-chunk token counts
    tokenize: Literal["none", "prompt-or-messages", "prompt"] = "none"  # /tokenize body shape it accepts
    cache_reset: tuple[str, str] | None = None  # (method, path) that empties the prefix cache
    cache_reset_busy: int | None = None  # the status the reset answers while requests still run: retried, bounded
    metrics_prefix: str | None = None  # the engine's Prometheus name prefix on /metrics


EXTERNAL_CAPABILITIES = EngineCapabilities(tokenize="prompt-or-messages")
"""An endpoint perfgate did not start: /tokenize is tried (it may 404); nothing else is assumed."""


@runtime_checkable
class EngineAdapter(Protocol):
    """One engine's specifics: everything the pool, the server lifecycle, preflight and the trial read.

    Registered under the ``perfgate.engines`` entry-point group (perfgate.engines.registry); the
    built-in ones live in perfgate.engines.<name>.
    """

    #: the engine kind the matrix names, and the engine name results record
    name: str
    #: distribution whose version identifies the engine in a provisioned venv (None: not installed by perfgate)
    distribution: str | None
    #: what its API offers beyond OpenAI compatibility (the trial asks these, never the name)
    capabilities: EngineCapabilities
    #: the flag and default of the share of GPU memory it takes (preflight sizes a model against it);
    #: None for an engine that needs no GPU
    gpu_memory_fraction: tuple[str, float] | None

    def launch_plan(
        self, python: Path, model: ModelRef, host: str, port: int, config: EngineConfig
    ) -> LaunchPlan:
        """The command, environment, health path and recorded flags of one server."""
        ...

    def version_paths(self) -> tuple[str, ...]:
        """HTTP GET paths that report the engine version, tried in order."""
        ...


def protocol_members() -> tuple[str, ...]:
    """The names an adapter must have (the registry's check and its message)."""
    methods = [n for n, v in vars(EngineAdapter).items() if callable(v) and not n.startswith("_")]
    return (*EngineAdapter.__annotations__, *methods)
