"""Judging a case's trials against its stored baseline.

Flow per case: no usable trials → nothing to judge (the outcome already says
failed / client-bound); ``--perf-update-baselines`` → write the baseline from a
complete, error-free run; otherwise load the baseline (of this engine version,
or of ``--perf-baseline-version`` for an upgrade question), refuse to compare
across a different environment unless told, compare, and re-run once to
confirm any regression before failing the test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import __version__
from .baselines import (
    Baseline, BaselineError, Provenance, find_baseline, fingerprint, key_of, load_baseline,
    save_baseline, versions_available,
)
from .environment import git_commit, now_iso
from .stats import KEY_METRICS, MetricVerdict, compare_summaries, environment_mismatch


@dataclass
class Judgement:
    status: str  # ok | regression | no_baseline | env_mismatch | baseline_written | not_judged
    verdicts: list[MetricVerdict] = field(default_factory=list)
    baseline_path: str | None = None
    baseline_version: str | None = None
    baseline_created_at: str | None = None
    reason: str | None = None


def _trials(outcome) -> list[dict[str, float | None]]:
    return [r.summary.metrics for r in outcome.results if r.summary is not None]


def _compare(case, outcome, baseline: Baseline) -> list[MetricVerdict]:
    spec = case.scenario.spec
    return compare_summaries(baseline.trials, _trials(outcome), KEY_METRICS,
                             min_effect=spec.min_effect, observe_only=spec.observe_only)


def judge(session, outcome) -> None:
    case, config = outcome.case, session.config
    usable = [r for r in outcome.results if r.status == "ok"]
    if outcome.error or len(usable) != len(outcome.results) or not usable:
        outcome.judgement = Judgement("not_judged", reason="run failed or client-bound")
        return
    first = usable[0]
    if config.getoption("--perf-update-baselines"):
        if any(r.summary.failed for r in usable):
            outcome.judgement = Judgement("not_judged", reason="baseline not written: the run had request errors")
            outcome.verdict_lines.append(outcome.judgement.reason)
            return
        baseline = Baseline(
            key=key_of(first), fingerprint=fingerprint(first),
            provenance=Provenance(created_at=now_iso(), git_commit=git_commit(), perfgate_version=__version__,
                                  results=[str(r.test_id) + f".trial{r.trial}" for r in usable]),
            trials=_trials(outcome),
        )
        path, changes = save_baseline(session.baselines_dir, baseline, watch=KEY_METRICS)
        outcome.judgement = Judgement("baseline_written", baseline_path=str(path))
        outcome.verdict_lines.append(f"baseline written: {path}")
        outcome.verdict_lines.extend(f"  {c}" for c in changes)
        return
    against = config.getoption("--perf-baseline-version")
    key = key_of(first, engine_version=against)
    context = f"{key.engine} {key.engine_version} / {key.model} / {key.hardware}"
    path = find_baseline(session.baselines_dir, key)
    if path is None:
        others = versions_available(session.baselines_dir, key)
        hint = f" (baselines exist for versions: {', '.join(others)})" if others else ""
        outcome.judgement = Judgement("no_baseline", reason=f"no baseline for {context}{hint}")
        outcome.verdict_lines.append(outcome.judgement.reason)
        return
    try:
        baseline = load_baseline(path)
    except BaselineError as exc:
        outcome.error = f"{case.id}: {exc}"
        return
    mismatch = environment_mismatch(baseline.fingerprint, fingerprint(first))
    j = Judgement("ok", baseline_path=str(path), baseline_version=key.engine_version,
                  baseline_created_at=baseline.provenance.created_at)
    outcome.judgement = j
    if mismatch and not config.getoption("--perf-allow-env-mismatch"):
        j.status, j.reason = "env_mismatch", "environment differs from the baseline: " + "; ".join(mismatch)
        outcome.verdict_lines.append(f"not compared, {j.reason} (use --perf-allow-env-mismatch)")
        return
    verdicts = _compare(case, outcome, baseline)
    bad = [v for v in verdicts if v.verdict == "regression" and not v.observe_only]
    if bad:  # confirm with a second full set of trials before failing anyone's build
        outcome.verdict_lines.append("regression suspected; confirmation run ...")
        session.rerun_trials(outcome)
        verdicts = _compare(case, outcome, baseline)
        bad = [v for v in verdicts if v.verdict == "regression" and not v.observe_only]
    j.verdicts = verdicts
    for v in verdicts:
        if v.verdict in ("regression", "improvement", "inconclusive"):
            tag = v.verdict.upper() + (" (observe-only)" if v.observe_only else "")
            mde = f", detectable here: ±{v.mde_pct:.1f}%" if v.verdict == "inconclusive" and v.mde_pct else ""
            outcome.verdict_lines.append(f"{tag}: {v.one_line(context)}{mde}")
    if bad:
        j.status = "regression"
        outcome.regressions.extend(v.one_line(context) for v in bad)
