"""Session state: runs a case's trials against the pool's target and keeps outcomes.

A case is N trials (one complete load run each, optionally on a freshly booted
engine). Per-trial summaries, never pooled per-request samples, feed the
verdict, because requests within one trial share the same engine state and
are not independent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .engines.provision import ProvisionError
from .engines.server import ServerError
from .matrix import Case
from .results import Result, write_json_atomic
from .targets import TargetPool


@dataclass
class CaseOutcome:
    case: Case
    results: list[Result] = field(default_factory=list)
    error: str | None = None  # engine failed to boot/crashed: no numbers at all
    verdict_lines: list[str] = field(default_factory=list)  # filled by the judge
    regressions: list[str] = field(default_factory=list)
    judgement: object | None = None  # perfgate.verdicts.Judgement

    @property
    def status(self) -> str:
        if self.error:
            return "failed"
        if any(r.status == "failed" for r in self.results):
            return "failed"
        if any(r.status == "client_bound" for r in self.results):
            return "client_bound"
        if self.regressions:
            return "regression"
        judged = getattr(self.judgement, "status", None)
        return judged if judged in ("no_baseline", "env_mismatch", "baseline_written") else "ok"

    def check(self) -> None:
        """Fail the calling test with one line when the case failed or regressed."""
        if self.error:
            pytest.fail(self.error, pytrace=False)
        failed = [r for r in self.results if r.status == "failed"]
        if failed:
            pytest.fail(f"{self.case.id}: trial {failed[0].trial} failed: {failed[0].failure_reason}", pytrace=False)
        bound = [r for r in self.results if r.status == "client_bound"]
        if bound:
            pytest.fail(
                f"{self.case.id}: client-bound, latencies describe the load generator, not the engine: "
                f"{bound[0].failure_reason}", pytrace=False,
            )
        if self.regressions:
            more = len(self.regressions) - 1
            pytest.fail(self.regressions[0] + (f" (and {more} more regressed metrics)" if more else ""), pytrace=False)
        judgement = self.judgement
        if judgement is not None and getattr(judgement, "status", None) == "env_mismatch":
            pytest.skip(f"{self.case.id}: {judgement.reason}")


def _verdict_record(v) -> dict:
    return {
        "metric": v.metric, "verdict": v.verdict, "ratio": v.ratio, "ci_low": v.ci_low, "ci_high": v.ci_high,
        "change_pct": v.change_pct, "mde_pct": v.mde_pct, "n_baseline": v.n_baseline, "n_current": v.n_current,
        "direction": v.direction, "observe_only": v.observe_only,
        "baseline_median": v.baseline_median, "current_median": v.current_median,
    }


def write_verdicts(path: Path, outcomes: list[CaseOutcome]) -> None:
    """The session's judgements next to the results, for the report (atomic)."""
    cases = []
    for o in outcomes:
        j = o.judgement
        first = o.results[0] if o.results else None
        engine = first.environment.engine if first else None
        cases.append({
            "case_id": o.case.id, "engine": engine.name if engine else o.case.engine.kind,
            "engine_version": engine.version if engine else None, "model": o.case.model.name,
            "scenario": o.case.scenario.name, "hardware": o.case.hardware, "status": o.status,
            "reason": o.error or (o.regressions and "; ".join(o.regressions)) or getattr(j, "reason", None),
            "baseline": {"path": j.baseline_path, "engine_version": j.baseline_version,
                         "created_at": j.baseline_created_at} if j is not None and j.baseline_path else None,
            "verdicts": [_verdict_record(v) for v in getattr(j, "verdicts", [])],
        })
    write_json_atomic(path, json.dumps({"schema_version": 1, "cases": cases}, indent=1))


@dataclass
class PerfSession:
    config: pytest.Config
    results_dir: Path
    cache_dir: Path
    baselines_dir: Path
    outcomes: list[CaseOutcome] = field(default_factory=list)
    report_paths: list[Path] = field(default_factory=list)
    report_error: str | None = None
    _pool: TargetPool | None = None

    @property
    def pool(self) -> TargetPool:
        if self._pool is None:
            self._pool = TargetPool(self.cache_dir, self.results_dir / "logs")
        return self._pool

    def trials_for(self, case: Case) -> int:
        return self.config.getoption("--perf-trials") or case.scenario.spec.trials

    def _run_trials(self, outcome: CaseOutcome, count: int) -> None:
        from .runner import run_trial  # late import: keeps plugin loading light

        case = outcome.case
        start = len(outcome.results)
        for trial in range(start, start + count):
            fresh = trial > 0 and case.scenario.spec.restart_between_trials
            target = self.pool.get(case.engine, case.model, fresh=fresh)
            outcome.results.append(
                run_trial(target, case.scenario, trial=trial, test_id=case.id, results_dir=self.results_dir)
            )

    def rerun_trials(self, outcome: CaseOutcome) -> None:
        """The confirmation run: as many trials again, appended to the outcome."""
        self._run_trials(outcome, self.trials_for(outcome.case))

    def run_case(self, case: Case) -> CaseOutcome:
        from .workload import WorkloadError  # late import: keeps plugin loading light

        outcome = CaseOutcome(case)
        self.outcomes.append(outcome)
        try:
            self._run_trials(outcome, self.trials_for(case))
        except (ServerError, WorkloadError, ProvisionError) as exc:
            outcome.error = f"{case.id}: {exc}"
            return outcome
        from .verdicts import judge  # late import: verdicts pull in scipy

        try:
            judge(self, outcome)
        except ServerError as exc:  # the engine died during the confirmation run
            outcome.error = f"{case.id}: {exc}"
        return outcome

    def finish(self) -> None:
        try:
            if self._pool is not None:
                self._pool.release()
        finally:
            if self.outcomes:
                write_verdicts(self.results_dir / "verdicts.json", self.outcomes)
                self.render_report()

    def render_report(self) -> None:
        """index.html + summary.md into the results directory (a report failure never hides test results)."""
        from .report import render_report

        try:
            self.report_paths = render_report([self.results_dir], self.results_dir)
        except Exception as exc:  # noqa: BLE001 - reported in the terminal summary
            self.report_error = f"report not rendered: {type(exc).__name__}: {exc}"

    def summary_lines(self) -> list[str]:
        lines = []
        for o in self.outcomes:
            lines.append(f"{o.status.upper():13s} {o.case.id}")
            lines.extend(f"    {line}" for line in o.verdict_lines)
        lines.append(f"results and server logs: {self.results_dir}")
        if self.report_paths:
            lines.append(f"report: {self.report_paths[0]} (summary: {self.report_paths[1]})")
        if self.report_error:
            lines.append(self.report_error)
        return lines
