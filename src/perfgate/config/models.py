"""A model: as the matrix names it (:class:`ModelSpec`) and as a server loads it (:class:`ModelRef`).

The serving defaults both carry are declared once (:class:`ModelServing`); a
spec becomes a ref when its recipe is built or its path resolved
(:meth:`ModelSpec.resolved`), so nothing copies them field by field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationInfo, model_validator
from pydantic.dataclasses import dataclass

from perfgate.config.yamlfile import FROM_KEY, STRICT, from_file


@dataclass(frozen=True, config=STRICT, kw_only=True)
class ModelServing:
    """Serving defaults the adapters apply unless the engine's own flags set them (docs/engines.md)."""

    max_model_len: int | None = Field(default=None, gt=0, kw_only=True)  # context the KV cache is sized for
    dtype: str | None = Field(default=None, kw_only=True)
    engine_args: tuple[str, ...] = Field(default=(), kw_only=True)  # more arguments for any engine serving this model
    # a hub model's pinned commit: `perfgate models fetch` fetches it and the engine serves it (--revision)
    revision: str | None = Field(default=None, kw_only=True)


@dataclass(frozen=True, config=STRICT)
class ModelRef(ModelServing):
    """The model a server loads: a local directory (tiny recipe, HF cache) or an HF id."""

    name: str  # served model name
    path: str  # directory or hub id resolved offline from the local cache


@dataclass(frozen=True, config=STRICT)
class ModelSpec(ModelServing):
    """A matrix model: a tiny-model ``recipe`` to build, or a ``path`` (local dir or HF id) - exactly one in a file."""

    name: Annotated[str, FROM_KEY]  # the matrix key
    recipe: Path | None = None  # relative to the project root in a file; resolved by the loader
    path: str | None = None

    @model_validator(mode="after")
    def _one(self, info: ValidationInfo) -> "ModelSpec":
        if from_file(info) and (self.recipe is None) == (self.path is None):
            raise ValueError("a model needs exactly one of `recipe` or `path`")
        return self

    def serving(self) -> dict:
        """The serving defaults, as keyword arguments for a :class:`ModelRef`."""
        return {k: getattr(self, k) for k in ModelServing.__pydantic_fields__}

    def resolved(self, path: str, name: str | None = None) -> ModelRef:
        """The ref a server loads from ``path`` (the built recipe, the resolved id), with these serving defaults."""
        return ModelRef(name or self.name, path, **self.serving())
