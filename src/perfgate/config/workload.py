"""What a scenario asks of the engine: request counts, lengths, arrival, shapes, SLOs (docs/metrics.md "Workloads").

:class:`WorkloadSpec` is the scenario's ``workload`` group; the result records
it as a :class:`perfgate.schema.result.Workload`, whose declared fields the
baseline fingerprint is computed from.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from perfgate.config.yamlfile import Frozen


class LengthDist(Frozen):
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


class WorkloadSpec(Frozen):
    """The requests: how many, how long, how they arrive, their shapes; the SLOs goodput counts against."""

    api: Literal["completions", "chat"] = "completions"
    num_requests: int = Field(gt=0)
    prompt_tokens: int | None = Field(default=None, gt=0)  # required unless input_len or dataset is given
    max_tokens: int | None = Field(default=None, gt=0)  # required unless output_len is given
    concurrency: int | None = Field(default=None, gt=0)
    request_rate: float | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)  # open loop: cap on requests in flight
    burstiness: float = Field(default=1.0, gt=0)
    warmup_requests: int = Field(default=2, ge=0)
    warmup_max_tokens: int | None = Field(default=None, gt=0)  # warm-up output length (None: max_tokens)
    seed: int = 0
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    slo_e2e_ms: float | None = Field(default=None, gt=0)
    # Shapes; none set = the exact fixed-length path.
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

    @model_validator(mode="after")
    def _shapes(self) -> "WorkloadSpec":
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
        return self

    @property
    def shaped(self) -> bool:
        """Whether the workload leaves the exact fixed-length path (datasets, distributions, prefixes, turns)."""
        return any(v is not None for v in (self.dataset, self.input_len, self.output_len, self.shared_prefix_tokens,
                                           self.turns))

    def record_fields(self) -> dict:
        """This workload as :class:`perfgate.schema.result.Workload` fields (lengths nominal, shapes as dicts)."""
        out = self.model_dump(exclude={"input_len", "output_len", "prompt_tokens", "max_tokens"})
        out["prompt_tokens"] = self.prompt_tokens or (self.input_len.nominal() if self.input_len else 0)
        out["max_tokens"] = self.max_tokens or (self.output_len.nominal() if self.output_len else 0)
        for name in ("input_len", "output_len"):
            dist = getattr(self, name)
            out[name] = dist.model_dump(exclude_none=True) if dist is not None else None
        return out
