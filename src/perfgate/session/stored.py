"""The stored-baseline workflow of a case: look up this machine's baseline, judge, confirm, or write a new one.

The judge itself is pure (:func:`perfgate.judge.verdict.judge_against_baseline`);
this module does what surrounds it: find and load the baseline of this
machine (an unnamed machine compares with none), confirm a suspected
regression on a freshly booted engine before failing anyone's build, and
write a baseline only from at least :data:`BASELINE_BOOTS` boots of an
error-free run. Each step takes the case's outcome and returns a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from perfgate import __version__
from perfgate.schema.status import UNUSABLE
from perfgate.schema.verdict import Judgement
from perfgate.session.outcome import CaseOutcome
from perfgate.session.trials import RunsTrials, TrialBatch

BASELINE_BOOTS = 2
"""Engine boots a baseline update draws its trials from: boot-to-boot variance belongs in a baseline."""


def more_trials(outcome: CaseOutcome, runner: RunsTrials, count: int) -> CaseOutcome:
    """``outcome`` with ``count`` more trials of its case on a freshly booted engine."""
    case = outcome.case
    more = runner.run(TrialBatch(case.engine, case.model, case.scenario, case.id, count=count,
                                start=len(outcome.results), fresh_first=True))
    return replace(outcome, results=outcome.results + more.results,
                   error=f"{case.id}: {more.error}" if more.error else outcome.error)


def case_policy(outcome: CaseOutcome, *, allow_env_mismatch: bool = False, upgrade: bool = False):
    """The judge policy of ``outcome``'s scenario: one place for the stored-baseline and the history paths."""
    from perfgate.judge.verdict import JudgePolicy

    spec = outcome.case.scenario.spec
    return JudgePolicy(min_effect=spec.policy.min_effect, observe_only=tuple(spec.policy.observe_only),
                       allow_env_mismatch=allow_env_mismatch, upgrade=upgrade,
                       compared_across=spec.policy.compared_across)


def judge_confirmed(outcome: CaseOutcome, runner: RunsTrials, trials: int,
                    judge: Callable[[CaseOutcome], CaseOutcome]) -> CaseOutcome:
    """``judge(outcome)``; a suspected regression is confirmed on a freshly booted engine (``trials`` more)
    and judged again before it stands: a bad boot is not a regression."""
    outcome = judge(outcome)
    assert outcome.judgement is not None
    if outcome.judgement.status != "regression":
        return outcome
    outcome = more_trials(replace(outcome, notes=(*outcome.notes, "regression suspected; confirmation run on a "
                                                                   "fresh boot ...")), runner, trials)
    return outcome if outcome.status in UNUSABLE else judge(outcome)


def judge_stored(outcome: CaseOutcome, runner: RunsTrials, *, baselines_dir: Path, trials: int,
                 against_version: str | None, allow_env_mismatch: bool) -> CaseOutcome:
    """Judge the case's trials against this machine's stored baseline (of ``against_version`` when given);
    a suspected regression is measured again on a fresh boot (``trials`` more) and judged on all of them."""
    from perfgate.judge.baselines import (
        BaselineError,
        find_baseline,
        fingerprint,
        key_of,
        load_baseline,
        machine_has_baselines,
        machines_with,
        versions_available,
    )
    from perfgate.judge.verdict import judge_against_baseline, not_found

    first = outcome.results[0]
    if outcome.machine is None:
        return replace(outcome, judgement=Judgement(
            status="not_comparable", context="stored baselines",
            reason="not comparable: this machine has no name (--perf-machine NAME or PERFGATE_MACHINE); "
                   "stored baselines are compared only on the machine that wrote them"))
    key = key_of(first, engine_version=against_version)
    path = find_baseline(baselines_dir, key)
    if path is None:
        return replace(outcome, judgement=not_found(key, versions_available(baselines_dir, key),
                                                    machines_with(baselines_dir, key),
                                                    machine_has_baselines(baselines_dir, key.machine)))
    try:
        baseline = load_baseline(path)
    except BaselineError as exc:
        return replace(outcome, error=f"{outcome.case.id}: {exc}")
    policy = case_policy(outcome, allow_env_mismatch=allow_env_mismatch, upgrade=against_version is not None)

    def judge(o: CaseOutcome) -> CaseOutcome:
        current = [r.summary.metrics for r in o.results if r.summary is not None]
        return replace(o, judgement=judge_against_baseline(current, fingerprint(first), baseline, policy, str(path)))

    return judge_confirmed(outcome, runner, trials, judge)


def update_baseline(outcome: CaseOutcome, runner: RunsTrials, *, baselines_dir: Path, trials: int) -> CaseOutcome:
    """Measure the remaining boots (``trials`` each), then write the case's baseline for this machine from
    all of them, unless a trial was unusable or had request errors; the notes say what changed."""
    from perfgate.judge.baselines import (
        Baseline,
        BaselineError,
        Provenance,
        fingerprint,
        key_of,
        save_baseline,
    )
    from perfgate.judge.stats import KEY_METRICS
    from perfgate.measure.environment import calibrate, git_commit, now_iso

    case = outcome.case
    boots = 1 if case.engine.kind == "external" else BASELINE_BOOTS
    for _ in range(boots - 1):
        outcome = more_trials(outcome, runner, trials)
        if outcome.error:
            return outcome
    if outcome.status in UNUSABLE:
        return outcome
    if any(r.summary is None or r.summary.failed for r in outcome.results):
        return replace(outcome, notes=(*outcome.notes, "baseline not written: the run had request errors"))
    first = outcome.results[0]
    baseline = Baseline(
        key=key_of(first), fingerprint=fingerprint(first), calibration=calibrate(), boots=boots,
        provenance=Provenance(created_at=now_iso(), git_commit=git_commit(), perfgate_version=__version__,
                              results=[f"{r.test_id}.trial{r.trial}" for r in outcome.results]),
        trials=[r.summary.metrics for r in outcome.results if r.summary is not None],
    )
    try:
        path, changes = save_baseline(baselines_dir, baseline, watch=KEY_METRICS)
    except BaselineError as exc:  # an unreadable baseline in the way is reported, never replaced
        return replace(outcome, error=f"{case.id}: baseline not written: {exc}")
    return replace(outcome, baseline_written=str(path), notes=(
        *outcome.notes, f"baseline written: {path} ({len(baseline.trials)} trials, {boots} boot(s))",
        *(f"  {c}" for c in changes)))
