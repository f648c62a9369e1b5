"""The one verdict model: what the judge returns, the session writes to verdicts.json and the report reads.

* :class:`MetricVerdict` - one metric, current trials against reference trials.
* :class:`Judgement` - what :func:`perfgate.judge.verdict.judge` returns for a case.
* :class:`CaseVerdict` - a case as recorded: identity, machine, status, reason, the judgement's verdicts.
* :func:`case_status` - the status precedence, decided here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from perfgate.schema.files import read_document, write_text_atomic
from perfgate.schema.status import (  # UNUSABLE re-exported: readers that import it from here keep working
    NOT_COMPARED,
    UNUSABLE,  # noqa: F401
    CaseStatus,
    JudgementStatus,
    TrialStatus,
)

SCHEMA_VERSION = 2

Direction = Literal["lower", "higher"]
VerdictName = Literal["regression", "improvement", "no_change", "inconclusive", "no_baseline"]
Method = Literal["log-welch", "linear-welch", "absolute", "paired-log", "change-point", "none"]

Outcome = Literal["regression", "no_change", "improvement", "inconclusive"]
"""What a judged comparison says as a whole (:func:`perfgate.judge.sequential.outcome_of`)."""


class VerdictsFileError(ValueError):
    """verdicts.json is missing, not JSON, or not this schema; the message names the file."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _pct(r: float) -> str:
    return f"{(r - 1) * 100:+.1f}%"


class MetricVerdict(_Model):
    """One metric of one case: current trials against the reference (baseline or live A) trials."""

    metric: str
    verdict: VerdictName
    ratio: float | None = None  # current / reference (geometric means; arithmetic for the fallbacks)
    ci_low: float | None = None  # confidence interval of the ratio, at ``level``
    ci_high: float | None = None
    change_pct: float | None = None  # (ratio - 1) * 100
    mde_pct: float | None = None  # smallest worsening detectable here with 80% power, in %
    n_baseline: int
    n_current: int
    direction: Direction  # which way is better
    observe_only: bool = False  # shown, never counted by the gate
    baseline_median: float | None = None
    current_median: float | None = None
    level: float | None = None  # confidence level of the interval (after the multiplicity correction)
    min_effect: float | None = None
    method: Method = "log-welch"
    baseline_mean: float | None = None  # the absolute rule's means (error_rate)
    current_mean: float | None = None

    @property
    def judged(self) -> bool:
        """Counts toward the gate (observe-only metrics are shown, never counted)."""
        return not self.observe_only

    def one_line(self, context: str) -> str:
        """e.g. ``ttft_ms.p50 +12.3% [+8.1%, +16.5%] vs vllm 0.32.0 / tiny-llama / cpu``."""
        if self.method == "absolute" and self.baseline_mean is not None:
            return (f"{self.metric} {self.baseline_mean:.4g} -> {self.current_mean:.4g} "
                    f"(mean of {self.n_baseline} -> {self.n_current} trials) vs {context}")
        if self.ratio is None:
            return f"{self.metric} {self.verdict} ({self.n_baseline} -> {self.n_current} trials) vs {context}"
        if self.ci_low is None or self.ci_high is None:
            return (f"{self.metric} {_pct(self.ratio)} (no interval: {self.n_baseline} -> {self.n_current} trials)"
                    f" vs {context}")
        return f"{self.metric} {_pct(self.ratio)} [{_pct(self.ci_low)}, {_pct(self.ci_high)}] vs {context}"


class BaselineRef(_Model):
    """Where the reference trials came from: a stored baseline file, or a live engine in the same session."""

    path: str | None = None  # stored baseline file; None for a live comparison
    engine_version: str | None = None
    created_at: str | None = None
    machine: str | None = None
    live_engine: str | None = None  # engine configuration id of a live reference (A of an A/B)


class BlockPoint(_Model):
    """One paired block of a live A/B, as the report draws it: the primary metric's B/A ratio of that block."""

    block: int  # position among the kept blocks (a dropped block: the position it was re-run at)
    ratio: float | None = None  # B / A of the primary metric in this block
    dropped: str | None = None  # why the block was dropped and re-run (client-bound); None: kept
    cluster: int = 0  # the boot pair it ran on


class LookPoint(_Model):
    """The primary metric at one look of a live A/B: the running estimate, its interval, the look's boundary."""

    blocks: int
    ratio: float | None = None  # the paired estimate of B / A after ``blocks`` blocks
    ci_low: float | None = None  # its repeated confidence interval at this look's level
    ci_high: float | None = None
    boundary: float | None = None  # the estimate (B / A) beyond which this look calls a regression
    verdict: VerdictName | None = None


class LiveRecord(_Model):
    """A live A/B's blocks and looks (primary metric), and where its time went; for the report's block chart."""

    primary_metric: str
    direction: Direction = "lower"
    min_effect: float | None = None
    blocks: list[BlockPoint] = Field(default_factory=list)
    looks: list[LookPoint] = Field(default_factory=list)
    span_s: float | None = None  # first measurement window's start to the last one's end
    setup_s: float | None = None  # installs and boots before block 0 (not part of the span)


class Judgement(_Model):
    """The judge's answer for one case. ``status`` is the judgement's own, before run failures are considered."""

    status: JudgementStatus
    verdicts: list[MetricVerdict] = Field(default_factory=list)
    baseline: BaselineRef | None = None
    reason: str | None = None
    context: str = ""  # "vllm 0.31.0 / tiny-llama / cpu": what the figures are compared against
    notes: list[str] = Field(default_factory=list)  # worth knowing, not a mismatch (e.g. another perfgate version)
    outcome: Outcome | None = None  # live A/B: regression / no_change / improvement / inconclusive; None: not set
    primary_metric: str | None = None  # the gating metric holding most of alpha (live A/B)
    detectable_pct: float | None = None  # the primary metric's detectable effect at the blocks run (80% power)
    live: LiveRecord | None = None  # live A/B: the blocks and looks (the session adds them)
    first_run: bool = False  # no_baseline on a machine with no baseline at all: passes even under --perf-strict

    @property
    def undecided(self) -> bool:
        """Compared, and neither a regression nor "no change" shown: a live outcome of ``inconclusive``, or a
        stored comparison (no outcome) in which no gating ratio metric was decided."""
        if self.outcome is not None:
            return self.outcome == "inconclusive"
        gating = [v for v in self.verdicts if v.judged and v.method != "absolute"]
        return self.status == "ok" and bool(gating) and all(v.verdict == "inconclusive" for v in gating)

    @property
    def regressions(self) -> list[MetricVerdict]:
        return [v for v in self.verdicts if v.verdict == "regression" and v.judged]

    def lines(self) -> list[str]:
        """Human lines for the terminal: every gating verdict that is not 'no change', then the reason."""
        out = []
        for v in self.verdicts:
            if v.verdict in ("regression", "improvement", "inconclusive"):
                tag = v.verdict.upper() + (" (observe-only)" if v.observe_only else "")
                mde = f", detectable here: ±{v.mde_pct:.1f}%" if v.verdict == "inconclusive" and v.mde_pct else ""
                out.append(f"{tag}: {v.one_line(self.context)}{mde}")
        if self.status != "ok" and self.status != "regression" and self.reason:
            out.append(self.reason)
        return [*out, *self.notes]

    def failure_line(self) -> str | None:
        """The one line a failing test shows, or None when the judgement does not fail the case."""
        bad = sorted(self.regressions, key=lambda v: v.metric != self.primary_metric)  # the primary leads
        if not bad:
            return None
        more = len(bad) - 1
        return bad[0].one_line(self.context) + (f" (and {more} more regressed metrics)" if more else "")


def case_status(*, error: str | None, trial_statuses: list[TrialStatus], judgement: Judgement | None,
                baseline_written: bool = False, slo_violated: bool = False) -> CaseStatus:
    """The status of a case. Precedence: failed > client_bound > workload_not_delivered > slo_violated >
    regression > inconclusive > not compared > written > ok.

    A run that failed, was client-bound or did not get the asked workload
    delivered has no numbers worth judging; an absolute SLO assertion
    (``assert_slo``) fails on its own figures, before any comparison; a
    regression outranks "not compared" because it was compared; a comparison
    that decided nothing (:attr:`Judgement.undecided`) is inconclusive; a case
    that compared nothing never reads as ok.
    """
    if error or "failed" in trial_statuses:
        return "failed"
    if "client_bound" in trial_statuses:
        return "client_bound"
    if "workload_not_delivered" in trial_statuses:
        return "workload_not_delivered"
    if slo_violated:
        return "slo_violated"
    if judgement is not None and judgement.status == "regression":
        return "regression"
    if judgement is not None and judgement.undecided:
        return "inconclusive"
    if baseline_written:
        return "baseline_written"
    if judgement is None:
        return "not_judged"
    if judgement.status in NOT_COMPARED or judgement.status == "not_judged":
        return judgement.status
    return "ok"


class CaseVerdict(_Model):
    """One case in verdicts.json. Keyed for merging by engine, version, model, scenario and machine."""

    case_id: str
    engine: str
    engine_version: str | None = None
    model: str
    scenario: str
    hardware: str
    machine: str | None = None
    status: CaseStatus
    reason: str | None = None
    baseline: BaselineRef | None = None
    verdicts: list[MetricVerdict] = Field(default_factory=list)
    outcome: Outcome | None = None  # live A/B: regression / no_change / improvement / inconclusive
    detectable_pct: float | None = None  # the primary metric's detectable effect at the blocks run (80% power)
    live: LiveRecord | None = None  # live A/B: its blocks and looks (primary metric), its span

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (self.engine, self.engine_version or "?", self.model, self.scenario, self.machine or "?")

    @property
    def not_compared(self) -> bool:
        return self.status in NOT_COMPARED


class VerdictsFile(_Model):
    schema_version: Literal[2] = SCHEMA_VERSION
    cases: list[CaseVerdict] = Field(default_factory=list)

    def by_case(self) -> dict[str, CaseVerdict]:
        return {c.case_id: c for c in self.cases}

    def dumps(self) -> str:
        return self.model_dump_json(indent=1) + "\n"

    def write(self, path: Path) -> Path:
        """Atomically (temp file + rename), so a reader never sees half a file."""
        write_text_atomic(Path(path), self.dumps())
        return Path(path)


def load_verdicts(path: Path) -> VerdictsFile:
    """Read and validate ``verdicts.json``; any problem is a :class:`VerdictsFileError` naming the file."""
    return read_document(Path(path), VerdictsFile, SCHEMA_VERSION, VerdictsFileError, "verdicts file")
