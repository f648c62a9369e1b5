"""The test matrix: engines x models x scenarios, read from YAML and validated.

``perf/matrix.yaml`` names engine configurations, models and which scenarios
run on which hardware class; scenarios live one per file (``fixtures/scenarios``)
so a user's study is a file they can copy. The types live in their own modules
(:mod:`~perfgate.config.engines`, :mod:`~perfgate.config.models`,
:mod:`~perfgate.config.scenario`, :mod:`~perfgate.config.workload`) and are
importable from here, where the suite has always found them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator

from perfgate._suggest import did_you_mean
from perfgate.config.engines import EngineConfig
from perfgate.config.models import ModelRef, ModelServing, ModelSpec
from perfgate.config.scenario import (
    ABPlan,
    ChecksSpec,
    ClientSpec,
    PolicySpec,
    SaturationSpec,
    Scenario,
    ScenarioFile,
    TrialPlan,
    expand_sweep,
    load_scenario_file,
    load_scenarios,
)
from perfgate.config.workload import LengthDist, WorkloadSpec
from perfgate.config.yamlfile import MatrixError, Strict, load_yaml, validate

__all__ = ["ABPlan", "Case", "ChecksSpec", "ClientSpec", "EngineConfig", "LengthDist", "MatrixError",
           "MatrixFile", "ModelRef", "ModelServing", "ModelSpec", "PolicySpec", "RunEntry", "SaturationSpec",
           "Scenario", "ScenarioFile", "TrialPlan", "WorkloadSpec", "expand_sweep", "load_engines", "load_matrix",
           "load_models", "load_scenario_file", "load_scenarios"]


def _keyed(field: str, entries: Any) -> Any:
    """``{key: {...}}`` -> each entry with its key as ``field`` (the file names an entry by its key, only)."""
    if not isinstance(entries, Mapping):
        return entries
    out = {}
    for key, entry in entries.items():
        if isinstance(entry, Mapping):
            if field in entry:
                raise ValueError(f"{key}: `{field}` is the entry's key; give no `{field}` key")
            entry = {field: key, **entry}
        out[key] = entry
    return out


class RunEntry(Strict):
    hardware: Literal["cpu", "gpu"]
    engines: list[str]
    models: list[str]
    scenarios: list[str]  # names or glob patterns
    optional: bool = False  # collected only when --perf-engine names one of its engines


class MatrixFile(Strict):
    scenarios_dir: str = "fixtures/scenarios"
    engines: dict[str, EngineConfig]
    models: dict[str, ModelSpec]
    runs: list[RunEntry]

    @field_validator("engines", mode="before")
    @classmethod
    def _engine_ids(cls, value: Any) -> Any:
        return _keyed("id", value)

    @field_validator("models", mode="before")
    @classmethod
    def _model_names(cls, value: Any) -> Any:
        return _keyed("name", value)


@dataclass(frozen=True)
class Case:
    """One test: an engine configuration, a model and a scenario on a hardware class."""

    hardware: str
    engine: EngineConfig
    model: ModelSpec
    scenario: Scenario
    optional: bool = False

    @property
    def id(self) -> str:
        return f"{self.engine.id}-{self.model.name}-{self.scenario.name}"


def _root(path: Path) -> Path:
    """The project root a matrix's relative paths start from (``perf/matrix.yaml`` -> the repository)."""
    return path.parent.parent if path.parent.name == "perf" else path.parent


def _read(path: Path) -> MatrixFile:
    matrix: MatrixFile = validate(MatrixFile, load_yaml(path), path)
    root = _root(path)
    models = {k: dataclasses.replace(m, recipe=root / m.recipe) if m.recipe is not None else m
              for k, m in matrix.models.items()}
    return matrix.model_copy(update={"models": models})


def load_engines(path: Path) -> dict[str, EngineConfig]:
    """The engine configurations a matrix file defines, by id (for ``--perf-compare-to``)."""
    return dict(_read(Path(path)).engines)


def load_models(path: Path) -> dict[str, ModelSpec]:
    """The models a matrix file defines, by name (recipes resolved against the project root)."""
    return dict(_read(Path(path)).models)


def load_matrix(path: Path) -> list[Case]:
    """Read the matrix file and expand it into test cases (validated, with clear errors)."""
    path = Path(path)
    matrix = _read(path)
    scenarios = load_scenarios(_root(path) / matrix.scenarios_dir)
    cases = []
    for r, run in enumerate(matrix.runs):
        for e in run.engines:
            if e not in matrix.engines:
                raise MatrixError(f"{path}: runs.{r}: unknown engine {e!r}{did_you_mean(e, matrix.engines)}")
        for m in run.models:
            if m not in matrix.models:
                raise MatrixError(f"{path}: runs.{r}: unknown model {m!r}{did_you_mean(m, matrix.models)}")
            recipe = matrix.models[m].recipe
            if recipe is not None and not recipe.is_file():
                raise MatrixError(f"{path}: models.{m}: recipe {recipe} does not exist")
        families = []
        for pattern in run.scenarios:
            hit = [name for name in scenarios if fnmatch.fnmatch(name, pattern)]
            if not hit:
                raise MatrixError(f"{path}: runs.{r}: no scenario matches {pattern!r} in {matrix.scenarios_dir}"
                                  f"{did_you_mean(pattern, scenarios)}")
            families += [h for h in hit if h not in families]
        for e in run.engines:
            for m in run.models:
                for fam in families:
                    for sc in scenarios[fam]:
                        cases.append(Case(run.hardware, matrix.engines[e], matrix.models[m], sc, run.optional))
    return cases
