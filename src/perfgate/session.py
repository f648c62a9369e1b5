"""Session state: runs a case's trials against the pool's target and keeps outcomes.

A case is N trials (one complete load run each, optionally on a freshly booted
engine). Per-trial summaries, never pooled per-request samples, feed the
verdict, because requests within one trial share the same engine state and
are not independent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .engines.server import ServerError
from .matrix import Case
from .results import Result
from .targets import TargetPool


@dataclass
class CaseOutcome:
    case: Case
    results: list[Result] = field(default_factory=list)
    error: str | None = None  # engine failed to boot/crashed: no numbers at all
    verdict_lines: list[str] = field(default_factory=list)  # filled by the judge
    regressions: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.error:
            return "failed"
        if any(r.status == "failed" for r in self.results):
            return "failed"
        if any(r.status == "client_bound" for r in self.results):
            return "client_bound"
        return "regression" if self.regressions else "ok"

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
            pytest.fail("; ".join(self.regressions), pytrace=False)


@dataclass
class PerfSession:
    config: pytest.Config
    results_dir: Path
    cache_dir: Path
    baselines_dir: Path
    outcomes: list[CaseOutcome] = field(default_factory=list)
    _pool: TargetPool | None = None

    @property
    def pool(self) -> TargetPool:
        if self._pool is None:
            self._pool = TargetPool(self.cache_dir, self.results_dir / "logs")
        return self._pool

    def trials_for(self, case: Case) -> int:
        return self.config.getoption("--perf-trials") or case.scenario.spec.trials

    def run_case(self, case: Case) -> CaseOutcome:
        from .runner import run_trial  # late import: keeps plugin loading light

        outcome = CaseOutcome(case)
        self.outcomes.append(outcome)
        try:
            for trial in range(self.trials_for(case)):
                fresh = trial > 0 and case.scenario.spec.restart_between_trials
                target = self.pool.get(case.engine, case.model, fresh=fresh)
                outcome.results.append(
                    run_trial(target, case.scenario, trial=trial, test_id=case.id, results_dir=self.results_dir)
                )
        except ServerError as exc:
            outcome.error = f"{case.id}: {exc}"
            return outcome
        from .verdicts import judge  # late import: verdicts pull in scipy

        judge(self, outcome)
        return outcome

    def finish(self) -> None:
        if self._pool is not None:
            self._pool.release()

    def summary_lines(self) -> list[str]:
        lines = []
        for o in self.outcomes:
            lines.append(f"{o.status.upper():13s} {o.case.id}")
            lines.extend(f"    {line}" for line in o.verdict_lines)
        lines.append(f"results and server logs: {self.results_dir}")
        return lines
