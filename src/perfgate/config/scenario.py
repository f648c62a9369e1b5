"""A scenario: the workload plus how it is run, measured and judged, one frozen group per concern.

A scenario file may stay flat (``num_requests``, ``client_http``, ``ab_alpha``,
``assert_slo`` ...): each flat key belongs to exactly one group and is routed
there (the group's prefix, e.g. ``client_`` or ``ab_``, dropped), and the
nested form (``client: {http: aiohttp}``) is accepted too. Defaults are
written once, in the groups. A scenario may declare a ``sweep`` (e.g. prompt
length x concurrency) that expands into one :class:`Scenario` per point.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from perfgate._suggest import did_you_mean
from perfgate.config.workload import LengthDist, WorkloadSpec
from perfgate.config.yamlfile import Frozen, MatrixError, load_yaml, loc_str, validate
from perfgate.schema.result import DISTURBANCE_BOUND, PROMPT_TOKENS_TOLERANCE, Workload

__all__ = ["ABPlan", "ChecksSpec", "ClientSpec", "LengthDist", "PolicySpec", "SaturationSpec", "Scenario",
           "ScenarioFile", "TrialPlan", "WorkloadSpec", "expand_sweep", "load_scenario_file", "load_scenarios"]


class ClientSpec(Frozen):
    """The load client (docs/accuracy.md): processes, event loop, HTTP path. Recorded in the result and part of
    the baseline fingerprint: the HTTP path alone moves TTFT error by ~11 ms at c=64."""

    workers: int = Field(default=1, ge=1)
    uvloop: bool = True
    http: Literal["raw", "aiohttp"] = "raw"


class TrialPlan(Frozen):
    """How many trials, how they are bounded, and what is measured beside the requests."""

    trials: int = Field(default=3, gt=0)
    restart_between_trials: bool = False
    timeout_s: float = Field(default=600.0, gt=0)  # per request: no complete answer by then is a timeout
    trial_timeout_s: float = Field(default=3600.0, gt=0)  # per trial, warm-up included: a hung engine ends here
    hourly_price_usd: float | None = None  # the study's instance price: used with price: study (measure.cost)
    price: Literal["hardware", "study"] = "hardware"  # cost from the hardware class's price, or the study's
    engine_gauges_interval_s: float | None = None  # sample /metrics gauges in the window (observer effect!)


ACROSS_RULE = r"^(major|shown|exact|within:(0(\.\d+)?|1(\.0+)?)|same:[a-z_]+)$"
"""A rule of ``policy.compared_across`` (the defaults and their meaning: perfgate.judge.baselines.COMPARED_ACROSS)."""


class PolicySpec(Frozen):
    """How a comparison is judged: which effects matter, which metrics are only shown."""

    min_effect: dict[str, float] = Field(default_factory=dict)  # metric -> relative effect that matters
    observe_only: tuple[str, ...] = ()
    compared_across: dict[str, str] = Field(default_factory=dict)  # fingerprint key -> rule, over the judge's defaults

    @field_validator("compared_across")
    @classmethod
    def _rules(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [f"{k}: {r!r}" for k, r in v.items() if not re.match(ACROSS_RULE, r)]
        if bad:
            raise ValueError(f"compared_across: unknown rule(s) {', '.join(bad)} "
                             "(major, shown, exact, within:FRACTION, same:KEY)")
        return v


class ABPlan(Frozen):
    """Live A/B (--perf-compare-to): paired blocks, first look, last look, false-regression rate over all looks.

    Defaults fit GPU-like noise (trial CV ~2%: a 5% change is clear by 12-24 blocks); the CPU scenarios run
    up to 144 short blocks (docs/statistics.md). Not part of the scenario's fingerprint: how long a comparison
    runs changes no measurement, and the A/B's own trial shape (``trial_requests``, ``warmup_*``) is in its
    trials' recorded workload, so they are a series of their own in the history. ``primary_metric`` None:
    the family's default (:func:`perfgate.judge.sequential.default_primary_metric`).
    """

    min_blocks: int = Field(default=12, ge=2)
    max_blocks: int = Field(default=24, ge=2)
    alpha: float = Field(default=0.01, gt=0, lt=1)  # one-sided, per comparison
    look_every: int = Field(default=6, ge=1)
    primary_metric: str | None = None
    # The A/B's own trial shape (None: the scenario's): shorter trials give more blocks in the same time, which
    # pays where block-to-block drift, not the sampling within a trial, is most of the noise (docs/statistics.md).
    # A and B still get the same prompts within a block.
    trial_requests: int | None = Field(default=None, ge=1)
    warmup_requests: int | None = Field(default=None, ge=0)  # only as many as the resume transient needs
    warmup_max_tokens: int | None = Field(default=None, gt=0)  # and only as long
    # A block whose trial lost more than this share of its engine's or client's cores to other processes is
    # dropped and re-run (perfgate.schema.result.DISTURBANCE_BOUND, measured by perfgate.measure.contention).
    max_disturbance: float = Field(default=DISTURBANCE_BOUND, gt=0, le=1)


class ChecksSpec(Frozen):
    """Checks on the run's own figures: SLO assertion, the delivered-workload tolerances (docs/metrics.md)."""

    assert_slo: bool = False  # fail the case when p99 TTFT / TPOT / e2e exceeds its SLO (saturation: below the rate)
    prompt_tokens_tolerance: float = Field(default=PROMPT_TOKENS_TOLERANCE, ge=0)  # delivered vs asked, fraction
    max_coalesced_fraction: float = Field(default=0.5, ge=0, le=1)  # of token gaps; above: not delivered


class SaturationSpec(Frozen):
    """Raise the request rate step by step until goodput under the scenario's SLOs stops rising."""

    rates: tuple[float, ...] = ()  # explicit steps (req/s), ascending
    start_rate: float | None = Field(default=None, gt=0)  # or: start, multiply by `factor` each step
    factor: float = Field(default=1.5, gt=1)
    max_steps: int = Field(default=8, ge=2)
    step_duration_s: float = Field(default=10.0, gt=0)  # each step is a duration run of this length
    min_gain: float = Field(default=0.05, ge=0)  # goodput must rise by this fraction to count as rising
    patience: int = Field(default=1, ge=1)  # steps without a rise before stopping

    @model_validator(mode="after")
    def _check(self) -> "SaturationSpec":
        if bool(self.rates) == (self.start_rate is not None):
            raise ValueError("saturation needs exactly one of `rates` (a list) or `start_rate`")
        if self.rates and (any(r <= 0 for r in self.rates) or list(self.rates) != sorted(self.rates)):
            raise ValueError("saturation `rates` must be positive and ascending")
        return self

    def step_rates(self) -> list[float]:
        if self.rates:
            return list(self.rates)
        return [round(self.start_rate * self.factor ** i, 3) for i in range(self.max_steps)]  # type: ignore[operator]


GROUPS: dict[str, tuple[str, type[Frozen]]] = {
    "workload": ("", WorkloadSpec), "client": ("client_", ClientSpec), "trial": ("", TrialPlan),
    "policy": ("", PolicySpec), "ab": ("ab_", ABPlan), "checks": ("", ChecksSpec),
}
"""Group name -> (the prefix its flat keys carry, its type)."""

FLAT_KEYS: dict[str, tuple[str, str]] = {
    prefix + name: (group, name) for group, (prefix, tp) in GROUPS.items() for name in tp.model_fields}
"""Flat scenario key -> (group, field): ``client_http`` -> ("client", "http")."""

SWEEPABLE = ("prompt_tokens", "max_tokens", "concurrency", "request_rate", "num_requests")  # workload fields


def _route(data: Mapping[str, Any]) -> dict[str, Any]:
    """Flat keys into their groups; a group given nested is merged; any other key is left for pydantic to judge."""
    out: dict[str, Any] = {}
    groups: dict[str, Any] = {g: {} for g in GROUPS}
    for key, value in data.items():
        if key in GROUPS and isinstance(value, Mapping):
            items = [(k, value[k], f"{key}.{k}") for k in value]
        elif key in GROUPS:
            groups[key] = value  # not a mapping: the group's own error says so
            continue
        elif key in FLAT_KEYS:
            items = [(FLAT_KEYS[key][1], value, key)]
            key = FLAT_KEYS[key][0]
        else:
            out[key] = value
            continue
        for name, v, shown in items:
            if name in groups[key]:
                raise ValueError(f"`{shown}` is given twice (flat and under `{key}`)")
            groups[key][name] = v
    return {**out, **groups}


class ScenarioFile(Frozen):
    """A scenario: the workload plus how to run and judge it."""

    name: str
    description: str = ""
    workload: WorkloadSpec
    client: ClientSpec = ClientSpec()
    trial: TrialPlan = TrialPlan()
    policy: PolicySpec = PolicySpec()
    ab: ABPlan = ABPlan()
    checks: ChecksSpec = ChecksSpec()
    saturation: SaturationSpec | None = None
    sweep: dict[str, tuple[int | float, ...]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _flat(cls, data: Any) -> Any:
        return _route(data) if isinstance(data, Mapping) else data

    @model_validator(mode="after")
    def _across_groups(self) -> "ScenarioFile":
        w = self.workload
        if self.saturation is not None:
            if self.sweep:
                raise ValueError("a saturation scenario finds its own rates: no `sweep`")
            if not any((w.slo_ttft_ms, w.slo_tpot_ms, w.slo_e2e_ms)):
                raise ValueError("saturation needs at least one SLO (slo_ttft_ms, slo_tpot_ms, slo_e2e_ms)")
            if w.request_rate is None:
                raise ValueError("saturation runs open loop: give `request_rate` (the rate the SLO is asserted at)")
        if self.sweep:
            bad = set(self.sweep) - set(SWEEPABLE)
            if bad:
                raise ValueError(f"cannot sweep {sorted(bad)}; sweepable: {sorted(SWEEPABLE)}")
            empty = sorted(k for k, v in self.sweep.items() if not v)
            if empty:
                raise ValueError(f"sweep {empty} has no values: a sweep needs at least one")
        has_c = w.concurrency is not None or "concurrency" in self.sweep
        has_r = w.request_rate is not None or "request_rate" in self.sweep
        if has_c == has_r:
            raise ValueError("give exactly one of `concurrency` (closed loop) or `request_rate` (open loop)")
        return self

    @classmethod
    def yaml_keys(cls) -> list[str]:
        """The keys a scenario file may give (for did-you-mean): the flat keys, the groups, the rest."""
        return [k for k in cls.model_fields if k not in GROUPS] + list(FLAT_KEYS) + list(GROUPS)

    @classmethod
    def yaml_loc(cls, loc: tuple) -> tuple:
        """An error location as the file's flat key: ("client", "http") -> ("client_http",)."""
        if loc and loc[0] in GROUPS and isinstance(loc[0], str):
            return (GROUPS[loc[0]][0] + str(loc[1]), *loc[2:]) if len(loc) > 1 else ()
        return loc

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> "ScenarioFile":
        """A changed copy, validated (pydantic's own copy is not); ``update`` takes flat keys or fields."""
        if not update:
            return super().model_copy(deep=deep)
        data = self.model_dump()
        for key, value in update.items():
            if key in FLAT_KEYS:
                group, name = FLAT_KEYS[key]
                data[group] = {**data[group], name: value}
            elif key in type(self).model_fields:
                data[key] = value
            else:
                raise ValueError(f"no scenario key {key!r}{did_you_mean(key, self.yaml_keys())}")
        return type(self).model_validate(data)

    def __getattr__(self, name: str) -> Any:
        """A flat key read as before (``spec.ab_alpha`` is ``spec.ab.alpha``); new code reads the groups."""
        route = FLAT_KEYS.get(name)
        if route is not None:
            return getattr(getattr(self, route[0]), route[1])
        return super().__getattr__(name)  # type: ignore[misc]


@dataclass(frozen=True)
class Scenario:
    """One concrete scenario point (a sweep already expanded)."""

    name: str  # e.g. "study-a[prompt_tokens=50,concurrency=2]"
    family: str  # the file's name, shared by all points of a sweep
    spec: ScenarioFile
    root: Path | None = None  # the scenario file's directory: a `dataset` path is relative to it

    def workload(self) -> Workload:
        """The workload as the result records it (and the baseline fingerprint compares it)."""
        s = self.spec
        sha = (hashlib.sha256((self.root / s.workload.dataset).read_bytes()).hexdigest()
               if s.workload.dataset is not None and self.root is not None else None)
        return Workload(scenario=self.name, **s.workload.record_fields(),
                        prompt_tokens_tolerance=s.checks.prompt_tokens_tolerance, dataset_sha256=sha)

    @property
    def shaped(self) -> bool:
        """Whether the workload leaves the exact fixed-length path (datasets, distributions, prefixes, turns)."""
        return self.spec.workload.shaped


def expand_sweep(spec: ScenarioFile, root: Path | None = None) -> list[Scenario]:
    if not spec.sweep:
        return [Scenario(spec.name, spec.name, spec, root)]
    keys = list(spec.sweep)
    points = []
    for values in itertools.product(*(spec.sweep[k] for k in keys)):
        changes = dict(zip(keys, values))
        if "request_rate" in changes:
            changes["concurrency"] = None
        label = ",".join(f"{k}={v}" for k, v in zip(keys, values))
        data = spec.model_dump()
        data.update(workload={**data["workload"], **changes}, sweep={})
        try:  # each point is validated like a file of its own (a swept concurrency of -1 is as wrong as a set one)
            point = ScenarioFile.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ValueError(f"sweep point [{label}]: {loc_str(ScenarioFile.yaml_loc(tuple(err['loc'])))}: "
                             f"{err['msg']}") from None
        points.append(Scenario(f"{spec.name}[{label}]", spec.name, point, root))
    return points


def load_scenario_file(path: Path) -> list[Scenario]:
    spec: ScenarioFile = validate(ScenarioFile, load_yaml(path), path)
    if spec.name != path.stem:
        raise MatrixError(f"{path}: scenario name {spec.name!r} must match the file name {path.stem!r}")
    if spec.workload.dataset is not None and not (path.parent / spec.workload.dataset).is_file():
        raise MatrixError(f"{path}: dataset: no file {spec.workload.dataset!r} "
                          "(paths are relative to the scenario file)")
    try:
        return expand_sweep(spec, path.parent)
    except ValueError as exc:
        raise MatrixError(f"{path}: {exc}") from None


def load_scenarios(directory: Path) -> dict[str, list[Scenario]]:
    """All scenario files in ``directory``, by family name."""
    if not directory.is_dir():
        raise MatrixError(f"{directory}: scenarios directory does not exist")
    return {p.stem: load_scenario_file(p) for p in sorted(directory.glob("*.yaml"))}


assert not set(FLAT_KEYS) & (set(GROUPS) | set(ScenarioFile.model_fields)), "a flat key shadows a group or field"
