"""The verdict of a case: current trials + reference + policy in, a typed :class:`Judgement` out.

Pure functions: nothing here runs an engine, reads pytest options or writes a
file. The session decides what to compare with (a stored baseline, or a live
engine in the same session), owns confirmation re-runs and baseline writes,
and records the judgement as it is returned.

* :func:`judge_against_baseline` - a stored baseline of this machine.
* :func:`judge_live` - a live, interleaved A/B (paired on blocks): :mod:`perfgate.judge.sequential`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from perfgate.judge.baselines import NOTED_KEYS, Baseline, BaselineKey, compared_across, comparison_notes
from perfgate.judge.stats import (
    DEFAULT_ALPHA,
    KEY_METRICS,
    PolicyOverride,
    compare_summaries,
    environment_mismatch,
)
from perfgate.schema.verdict import BaselineRef, Judgement

Trials = Sequence[Mapping[str, float | None]]


@dataclass(frozen=True)
class JudgePolicy:
    """How to judge: which metrics, what effect matters, the error rate, what may differ."""

    metrics: tuple[str, ...] = KEY_METRICS
    min_effect: Mapping[str, PolicyOverride] = field(default_factory=dict)
    observe_only: tuple[str, ...] = ()
    alpha: float = DEFAULT_ALPHA
    allow_env_mismatch: bool = False
    upgrade: bool = False  # reference is another engine version on purpose
    compared_across: Mapping[str, str] | None = None  # fingerprint key -> rule, over baselines.COMPARED_ACROSS


def context_of(key: BaselineKey) -> str:
    """``vllm 0.31.0 / tiny-llama / cpu @ machine``: what the figures were compared against."""
    return f"{key.engine} {key.engine_version} / {key.model} / {key.hardware} @ {key.machine}"


def not_found(key: BaselineKey, other_versions: Sequence[str], other_machines: Sequence[str],
              machine_has_baselines: bool = True) -> Judgement:
    """The judgement when no baseline exists for ``key``: not comparable (another machine has one), the
    machine's first run (it has no baseline at all: recorded, passes even under --perf-strict), or none."""
    context = context_of(key)
    if not machine_has_baselines:
        elsewhere = (f"; machine(s) {', '.join(map(repr, other_machines))} have baselines, never compared across "
                     "machines") if other_machines else ""
        return Judgement(status="no_baseline", context=context, first_run=True,
                         reason=f"first run on machine {key.machine!r}: recorded, nothing to compare "
                                f"(--perf-update-baselines makes it this machine's baseline{elsewhere})")
    if other_machines:
        return Judgement(status="not_comparable", context=context,
                         reason=f"not comparable: machine {key.machine!r} has no baseline; baselines exist for "
                                f"machine(s) {', '.join(map(repr, other_machines))} (numbers never cross machines; "
                                "use a live A/B, --perf-compare-to)")
    hint = f" (baselines exist for versions: {', '.join(other_versions)})" if other_versions else ""
    return Judgement(status="no_baseline", context=context, reason=f"no baseline for {context}{hint}")


def judge_against_baseline(current: Trials, current_fingerprint: Mapping[str, object], baseline: Baseline,
                           policy: JudgePolicy, baseline_path: str | None = None) -> Judgement:
    """Judge ``current`` trial summaries against a stored ``baseline`` of the same machine."""
    key = baseline.key
    ref = BaselineRef(path=baseline_path, engine_version=key.engine_version,
                      created_at=baseline.provenance.created_at, machine=key.machine)
    context = context_of(key)
    across, across_notes = compared_across(baseline.fingerprint, current_fingerprint, policy.compared_across)
    mismatch = environment_mismatch(baseline.fingerprint, current_fingerprint, upgrade=policy.upgrade,
                                    ignore=(*NOTED_KEYS, *sorted(across)))
    notes = comparison_notes(baseline, dict(current_fingerprint)) + across_notes
    if mismatch and not policy.allow_env_mismatch:
        return Judgement(status="env_mismatch", baseline=ref, context=context, notes=notes,
                         reason="not compared, environment differs from the baseline: " + "; ".join(mismatch)
                                + " (use --perf-allow-env-mismatch)")
    verdicts = compare_summaries(baseline.trials, current, policy.metrics, policy.alpha,
                                 min_effect=policy.min_effect, observe_only=policy.observe_only)
    regressed = any(v.verdict == "regression" and v.judged for v in verdicts)
    return Judgement(status="regression" if regressed else "ok", verdicts=verdicts, baseline=ref, context=context,
                     notes=notes)
