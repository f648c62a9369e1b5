"""The session's history: every case recorded in the history store, and judged against its own past.

The store is opened once per session (a store that cannot be used is one
line in the terminal summary; the run and its result files go on). Each case
with results is recorded once its status is known; a suite case is also
judged on its history (docs/statistics.md, "The gate on history"):

1. when the stored baseline compared nothing (no machine name, no baseline,
   another machine's), the trials are judged against the newest usable
   previous runs of the same series, exactly as against a stored baseline
   (:func:`perfgate.judge.verdict.judge_against_baseline`, a suspected
   regression confirmed on a fresh boot); a first run says so and is NOT
   COMPARED;
2. change points (:func:`perfgate.judge.changepoint.judge_history`): a new
   one that worsens a gating metric beyond its ``min_effect`` is a
   regression naming the run, commit and version range where it began.

What the report needs (each case's series, policy and new change points) is
written beside verdicts.json as history.json.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from perfgate.history.location import ENV_VAR, HistoryError, redact, resolve_url
from perfgate.judge.changepoint import (
    ChangePoint,
    HistoryPolicy,
    change_points,
    judge_history,
)
from perfgate.judge.history_run import HistoryRun
from perfgate.schema.files import write_text_atomic
from perfgate.schema.result import Result
from perfgate.schema.status import UNUSABLE
from perfgate.schema.verdict import BaselineRef, Judgement, MetricVerdict
from perfgate.session.outcome import CaseOutcome
from perfgate.session.stored import case_policy, judge_confirmed

OFF = frozenset({"off", "none", "no", "false", "0"})
"""``--perf-history off`` (or ``PERFGATE_HISTORY=off``): the session keeps no history."""
REFERENCE_RUNS = 3
"""Previous runs a case is compared with when it has no stored baseline (several boots, as a baseline has)."""
WINDOW = 200
"""Newest runs of a series the change point gate reads."""
HISTORY_FILE = "history.json"


def history_url(option: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The store's URL (option, else ``$PERFGATE_HISTORY``, else the cache's SQLite file); None when turned off."""
    env = os.environ if environ is None else environ
    value = option if option is not None else env.get(ENV_VAR)
    if value is not None and value.strip().lower() in OFF:
        return None
    return resolve_url(value, env)


def reference_runs(runs: list[HistoryRun], resets: dict[str | None, int], n: int = REFERENCE_RUNS) -> list[HistoryRun]:
    """The newest ``n`` usable runs since the latest all-metrics reset. A run the gate called a regression is no
    reference (a slowdown never becomes the yardstick by being measured twice) unless it was accepted: at or after
    an accepted reset every usable run counts."""
    start = next((i for i, r in enumerate(runs) if r.run_id == resets.get(None)), None)
    usable = [r for i, r in enumerate(runs) if r.status not in UNUSABLE
              and (r.status != "regression" or (start is not None and i >= start))]
    return usable[-n:]


def _describe(runs: list[HistoryRun]) -> str:
    """``history: run 1 (2026-12-03, engine 0.32.0)``, ``history: runs 3-5 (2026-12-01..2026-12-03, engine 0.32.0)``,
    ``history: runs 1, 3, 4 (...)``."""
    first, last = runs[0], runs[-1]
    versions = sorted({str(r.environment.get("engine_version") or "?") for r in runs})
    if len(runs) == 1:
        return f"history: run {first.run_id} ({first.started_at[:10]}, engine {versions[0]})"
    days = first.started_at[:10] if first.started_at[:10] == last.started_at[:10] else \
        f"{first.started_at[:10]}..{last.started_at[:10]}"
    ids = [r.run_id for r in runs]
    named = f"{first.run_id}-{last.run_id}" if ids == list(range(ids[0], ids[0] + len(ids))) else \
        ", ".join(map(str, ids))  # a run left out (a regression, a failed night) is not hidden in a range
    return f"history: runs {named} ({days}, engine {', '.join(versions)})"


def _within_run_spread(j: Judgement, runs: list[list[dict]], current: list[dict]) -> Judgement:
    """A regression against previous runs stands only where it clears the spread between those runs
    (:func:`perfgate.judge.stats.beyond_run_spread`): each previous run is one boot, and boots differ by more
    than one boot's trials. One that does not is inconclusive, saying why (a nightly's first runs, a slow boot)."""
    if j.status != "regression":
        return j
    from perfgate.judge.stats import beyond_run_spread

    verdicts, held_back = [], {}  # why -> the metrics it holds back, in one line each
    for v in j.verdicts:
        if v.verdict == "regression" and v.level is not None:
            ref = [[t[v.metric] for t in run if isinstance(t.get(v.metric), int | float)] for run in runs]
            cur = [t[v.metric] for t in current if isinstance(t.get(v.metric), int | float)]
            clears, why = beyond_run_spread(ref, cur, v.direction, v.level)
            if not clears:
                held_back.setdefault(why, []).append(f"{v.metric} {v.change_pct or 0.0:+.1f}%")
                v = v.model_copy(update={"verdict": "inconclusive"})
        verdicts.append(v)
    notes = [f"not beyond the spread between previous runs, so inconclusive: {', '.join(m)} ({why})"
             for why, m in held_back.items()]
    still = any(v.verdict == "regression" and v.judged for v in verdicts)
    return j.model_copy(update={"verdicts": verdicts, "status": "regression" if still else "ok",
                                "notes": [*j.notes, *notes]})


def _verdict(cp: ChangePoint) -> MetricVerdict:
    return MetricVerdict(
        metric=cp.metric, verdict="regression", ratio=cp.ratio, ci_low=cp.ci_low, ci_high=cp.ci_high,
        change_pct=cp.change_pct, n_baseline=cp.runs_before, n_current=cp.runs_after, direction=cp.direction,
        baseline_median=cp.before_median, current_median=cp.after_median, level=cp.level,
        min_effect=cp.min_effect, method="change-point")


@dataclass
class SessionHistory:
    """The session's history store (None: turned off), opened at the first case that has results."""

    url: str | None
    error: str | None = None  # the store could not be opened or written: one line for the summary
    cases: list[dict] = field(default_factory=list)  # per case: what history.json carries for the report
    recorded: int = 0
    _store: object = None
    _opened: bool = False

    def store(self):
        if self.url is None or self._opened:
            return self._store
        self._opened = True
        from perfgate.history.store import HistoryStore

        try:
            self._store = HistoryStore.open(self.url)
        except HistoryError as exc:
            self.error = f"{exc}; this session's runs are not recorded, its results are written as usual"
        return self._store

    def _fault(self, exc: HistoryError) -> None:
        self.error = self.error or f"{exc}; results are written as usual"

    def record(self, results: tuple[Result, ...] | list[Result], status: str, case_id: str, engine_entry: str,
               model_entry: str) -> object:
        """Record one run (a live A/B side, a saturation step, a ``perfgate load`` run); None when not recorded."""
        store = self.store()
        if store is None or not results:
            return None
        try:
            rec = store.record_run(list(results), status, case_id=case_id, engine_entry=engine_entry,
                                   model_entry=model_entry)
        except HistoryError as exc:
            self._fault(exc)
            return None
        self.recorded += rec.new
        return rec

    def record_outcome(self, outcome: CaseOutcome, reference: tuple[str, str] | None = None) -> None:
        """Record a case judged elsewhere (a live A/B: both sides; ``reference`` is A's engine and model entries)."""
        case = outcome.case
        self.record(outcome.results, outcome.status, case.id, case.engine.id, case.model.name)
        if outcome.reference_results and reference is not None:
            self.record(outcome.reference_results, "reference", outcome.reference_results[0].test_id, *reference)

    def record_saturation(self, outcome: CaseOutcome, results_dir: Path) -> None:
        """A saturation search: each step is a run of its own series (one offered rate), read back from its file."""
        from perfgate.schema.result import ResultError, iter_results, read_result

        curve = outcome.saturation
        if curve is None or self.store() is None:
            return
        steps = {s.test_id for s in curve.steps}
        found: dict[str, list[Result]] = {}
        for path in iter_results(Path(results_dir) / "results"):
            try:
                r = read_result(path)
            except ResultError:
                continue
            if r.test_id in steps:
                found.setdefault(r.test_id, []).append(r)
        case = outcome.case
        for test_id, results in sorted(found.items()):
            self.record(results, results[-1].status, test_id, case.engine.id, case.model.name)

    # -- the gate on history --------------------------------------------------------------------------

    def gate(self, outcome: CaseOutcome, runner, trials: int, allow_env_mismatch: bool = False) -> CaseOutcome:
        """Judge a suite case on its history (see the module's docstring), record it, and return the outcome."""
        store = self.store()
        if store is None or not outcome.results:
            return outcome
        try:
            return self._gate(store, outcome, runner, trials, allow_env_mismatch)
        except HistoryError as exc:
            self._fault(exc)
            return outcome

    def _gate(self, store, outcome: CaseOutcome, runner, trials: int, allow_env_mismatch: bool) -> CaseOutcome:
        from perfgate.history.keys import series_key

        case = outcome.case
        key = series_key(outcome.results[0], case.engine.id, case.model.name)
        sid = store.find_series(key)
        if sid is None:
            outcome = replace(outcome, notes=(*outcome.notes, *self._hardware_change(store, case.id, key)))
        j = outcome.judgement
        if (outcome.status not in UNUSABLE and outcome.baseline_written is None and j is not None
                and j.status in ("no_baseline", "not_comparable")):
            outcome = self._against_previous(store, outcome, sid, key.machine, runner, trials, allow_env_mismatch)
        rec = store.record_run(outcome.results, outcome.status, case_id=case.id, engine_entry=case.engine.id,
                               model_entry=case.model.name)
        self.recorded += rec.new
        series = store.series(rec.series_id, last=WINDOW)
        policy = HistoryPolicy.like(case_policy(outcome))
        found = judge_history(series.runs, policy, series.resets)
        if outcome.status in ("ok", "regression", "no_baseline", "not_comparable", "env_mismatch"):
            outcome = self._change_points(outcome, series, policy, found, key.machine)
            if found:
                store.set_status(rec.run_id, outcome.status)
        self.cases.append({
            "case_id": case.id, "series_id": rec.series_id, "run_id": rec.run_id, "machine": key.machine,
            "accelerator": outcome.results[0].environment.hardware.accelerator,
            "store": store.name, "policy": {"metrics": list(policy.metrics), "min_effect": dict(policy.min_effect),
                                            "observe_only": list(policy.observe_only)},
            "resets": [[m, r] for m, r in series.resets.items()],
            "runs": [{"run_id": r.run_id, "started_at": r.started_at, "status": r.status, "values": dict(r.values),
                      "environment": dict(r.environment)} for r in series.runs],
            "new_change_points": [c.one_line() for c in found]})
        return outcome

    def _hardware_change(self, store, case_id: str, key) -> list[str]:
        """A case's first run on new hardware of a machine: the old series ends here, said so (never absorbed)."""
        old = [i for i in store.list_series(case_id) if i.machine == key.machine and i.hardware != key.hardware]
        return [f"history: the hardware of machine {key.machine} changed since series #{i.id} ({i.n_runs} run(s), "
                f"last {(i.last or '?')[:10]}): that series ends; a new one begins with this run" for i in old]

    def _against_previous(self, store, outcome: CaseOutcome, sid: int | None, machine: str, runner, trials: int,
                          allow_env_mismatch: bool) -> CaseOutcome:
        from perfgate.judge.baselines import (
            Baseline,
            BaselineKey,
            Provenance,
            fingerprint,
        )
        from perfgate.judge.verdict import judge_against_baseline

        stored = outcome.judgement
        assert stored is not None
        series = store.series(sid, last=WINDOW) if sid is not None else None
        refs = reference_runs(series.runs, series.resets) if series else []
        if not refs:
            what = "first run of this series" if not series or not series.runs else \
                "no usable previous run in this series"
            return replace(outcome, judgement=stored.model_copy(update={
                "context": "history", "reason": f"{what} on machine {machine}: recorded, nothing to compare "
                                                f"(stored baselines: {stored.reason})"}))
        held = store.trials_of([r.run_id for r in refs])
        first = outcome.results[0]
        newest = refs[-1]
        baseline = Baseline(
            key=BaselineKey(machine=machine, hardware=first.environment.hardware.accelerator,
                            engine=first.environment.engine.name,
                            engine_version=str(newest.environment.get("engine_version") or "unknown"),
                            model=first.environment.model, scenario=first.scenario),
            fingerprint=held[newest.run_id][0],
            provenance=Provenance(created_at=newest.started_at, git_commit=newest.environment.get("git_commit"),
                                  perfgate_version=str(newest.environment.get("perfgate_version") or "?")),
            boots=len(refs), trials=[t for r in refs for t in held.get(r.run_id, (None, []))[1]])
        context = _describe(refs)
        ref = BaselineRef(path=f"{store.name} series #{sid} run(s) {', '.join(str(r.run_id) for r in refs)}",
                          engine_version=baseline.key.engine_version, created_at=newest.started_at, machine=machine)
        policy = case_policy(outcome, allow_env_mismatch=allow_env_mismatch)

        runs = [held.get(r.run_id, (None, []))[1] for r in refs]

        def judge(o: CaseOutcome) -> CaseOutcome:
            current = [r.summary.metrics for r in o.results if r.summary is not None]
            j = judge_against_baseline(current, fingerprint(first), baseline, policy)
            j = _within_run_spread(j, runs, current)
            return replace(o, judgement=j.model_copy(update={"context": context, "baseline": ref}))

        outcome = replace(outcome, notes=(*outcome.notes, f"stored baselines: {stored.reason}; judged on {context}"))
        return judge_confirmed(outcome, runner, trials, judge)

    def _change_points(self, outcome: CaseOutcome, series, policy: HistoryPolicy, found: list[ChangePoint],
                       machine: str) -> CaseOutcome:
        """Notes for the new change points that do not gate (observe-only, better, within min_effect), and a
        regression for those that do: the judgement says the history decided, the earlier one is kept as a note."""
        n = len(series.runs)
        gated = {(c.metric, c.index) for c in found}
        notes = [f"history: change point{' (observe only)' if c.observe_only else ''}: {c.one_line()}"
                 for c in change_points(series.runs, policy, series.resets)
                 if c.index >= n - policy.lookback and (c.metric, c.index) not in gated]
        if not found:
            return replace(outcome, notes=(*outcome.notes, *notes))
        first = found[0]
        before = outcome.judgement
        kept = [f"{before.context or 'stored baselines'}: {before.failure_line() or before.reason or before.status}"] \
            if before is not None else []
        context = (f"history on {machine} since run {first.run_id} ({first.started_at[:10]}, "
                   f"{', '.join(first.changes) or 'no recorded change'})")
        judgement = Judgement(
            status="regression", verdicts=[_verdict(c) for c in found], context=context,
            baseline=before.baseline if before else None, notes=[
                *(f"history regression: {c.one_line()}" for c in found), *kept,
                f"accept it as the new normal: perfgate history accept {first.run_id}"])
        return replace(outcome, judgement=judgement, notes=(*outcome.notes, *notes))

    # -- end of session -------------------------------------------------------------------------------

    def summary_lines(self) -> list[str]:
        """The terminal's history lines: the store's fault, else one line per new change point."""
        if self.error:
            return [f"history: {self.error}"]
        return [f"history: {c['case_id']}: {line}" for c in self.cases for line in c["new_change_points"]]

    def write(self, results_dir: Path) -> Path | None:
        """history.json beside verdicts.json (what the report draws the trends from); None when nothing to say."""
        path = Path(results_dir) / HISTORY_FILE
        if self.url is None:
            path.unlink(missing_ok=True)
            return None
        doc = {"store": redact(self.url), "error": self.error, "recorded": self.recorded,
               "cases": self.cases}
        write_text_atomic(path, json.dumps(doc, indent=1, default=str) + "\n")
        return path

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
