"""A run of the suite: each case measured and judged by the workflow it calls for, and the outcomes kept.

:meth:`PerfSession.run_case` picks the workflow (preflight stop, live A/B,
saturation search, or trials judged against this machine's stored baseline /
written as a new one) and returns the case's :class:`CaseOutcome`;
:meth:`PerfSession.finish` releases the engines and writes verdicts.json and
the report. The workflows live in their own modules and return values; this
module only sequences them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from perfgate.config.matrix import Case, ModelSpec
from perfgate.engines.pool import TargetPool
from perfgate.report.terminal import CaseLines, session_summary
from perfgate.schema.status import UNUSABLE, StatusCounts, count_statuses
from perfgate.schema.verdict import CaseVerdict
from perfgate.session.history import SessionHistory
from perfgate.session.outcome import CaseOutcome, trial_notes
from perfgate.session.results_dir import Rendered, ResultsDir
from perfgate.session.settings import Settings
from perfgate.session.trials import TrialBatch, TrialRunner


def _missing_model_path(model: ModelSpec) -> str | None:
    """A model given as a local path that is not there fails before any engine boots (hub ids pass)."""
    path = model.path
    if path is None or not (path.startswith(("/", "./", "../", "~"))):
        return None
    if Path(path).expanduser().exists():
        return None
    return f"model {model.name!r}: path {path} does not exist"


@dataclass
class PerfSession:
    settings: Settings
    outcomes: list[CaseOutcome] = field(default_factory=list)
    skipped: list[tuple[Case, str]] = field(default_factory=list)  # (case, reason): counted and shown
    preflight_blocks: dict[str, str] = field(default_factory=dict)  # case id -> the preflight line that stops it
    rendered: Rendered = field(default_factory=Rendered)
    _pool: TargetPool | None = None
    _dir: ResultsDir | None = None
    _history: SessionHistory | None = None

    def record_skip(self, case: Case, reason: str) -> None:
        """A case not run on this machine (no GPU, too few GPUs): counted in :meth:`counts`, shown in the summary."""
        self.skipped.append((case, reason))

    @property
    def results_dir(self) -> Path:
        return self.settings.results_dir

    @property
    def _results(self) -> ResultsDir:
        if self._dir is None:
            self._dir = ResultsDir(self.settings.results_dir)
        return self._dir

    @property
    def history(self) -> SessionHistory:
        """The history store of this session (opened at the first case with results; ``settings.history`` None: off)."""
        if self._history is None:
            self._history = SessionHistory(self.settings.history)
        return self._history

    @property
    def pool(self) -> TargetPool:
        if self._pool is None:
            self._pool = TargetPool(self.settings.cache_dir, self._results.logs,
                                    capacity=2 if self.settings.live else 1,
                                    endpoint_model=self.settings.endpoint_model,
                                    endpoint_auth_env=self.settings.endpoint_auth_env,
                                    endpoint_options=self.settings.endpoint_options)
            if self.settings.progress is not None:
                self._pool.progress = self.settings.progress
        return self._pool

    @property
    def report_paths(self) -> list[Path]:
        return list(self.rendered.paths)

    @property
    def report_error(self) -> str | None:
        return self.rendered.error

    def run_case(self, case: Case) -> CaseOutcome:
        """Measure and judge ``case``; the outcome is kept for verdicts.json and the summary, and returned."""
        self._results.start_fresh()
        case = self.settings.with_timeouts(case)
        outcome = CaseOutcome(case, machine=self.settings.machine, strict=self.settings.strict)
        try:
            outcome = self._run(outcome)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the case is incomplete, so nothing of it is judged
            self.outcomes.append(replace(
                outcome, error=f"{case.id}: interrupted: the run was stopped before this case completed"))
            raise
        except BaseException:  # a bug: the case is still counted and recorded before the error propagates
            self.outcomes.append(outcome)
            raise
        if self._pool is not None:
            outcome = replace(outcome, notes=(*self._pool.take_notes(), *outcome.notes))  # e.g. an endpoint's model
        self.outcomes.append(outcome)
        return outcome

    def _run(self, outcome: CaseOutcome) -> CaseOutcome:
        case, s = outcome.case, self.settings
        if case.id in self.preflight_blocks:  # nothing installed or booted for a case preflight stops
            return replace(outcome, error=f"{case.id}: preflight: {self.preflight_blocks[case.id]}")
        missing = _missing_model_path(case.model)
        if missing:
            return replace(outcome, error=f"{case.id}: {missing}")
        runner = TrialRunner(self.pool, self.results_dir, s.machine, s.on_result)
        side_a = s.reference_for(case)
        if side_a is not None:
            if case.scenario.spec.saturation is not None:
                return replace(outcome, error=f"{case.id}: a saturation scenario is not compared live "
                                              "(run it on each engine)")
            from perfgate.session.live_ab import LiveSettings, run_live_ab

            try:
                outcome = run_live_ab(outcome, runner, s.booted(side_a[0]), side_a[1],
                                      LiveSettings(s.machine, s.boots_per_side, s.time_budget_s))
            finally:
                self.pool.resume_all()
            self.history.record_outcome(outcome, reference=(side_a[0].id, side_a[1].name))
            return outcome
        if case.scenario.spec.saturation is not None:
            from perfgate.session.saturation import run_saturation

            outcome = run_saturation(outcome, runner, self.results_dir)
            self.history.record_saturation(outcome, self.results_dir)
            return outcome
        trials = self.settings.trials_for(case)
        ran = runner.run(TrialBatch(case.engine, case.model, case.scenario, case.id, count=trials))
        outcome = replace(outcome, results=ran.results, notes=trial_notes(ran.results),
                          error=f"{case.id}: {ran.error}" if ran.error else None)
        if outcome.status in UNUSABLE:
            return self.history.gate(outcome, runner, trials)  # recorded: a failed night is part of the series
        if case.scenario.spec.checks.assert_slo:
            from perfgate.measure.saturation import assert_slo_line

            outcome = replace(outcome, slo_violation=assert_slo_line(list(outcome.results), case.scenario))
        from perfgate.session.stored import judge_stored, update_baseline

        if s.update_baselines:
            outcome = update_baseline(outcome, runner, baselines_dir=s.baselines_dir, trials=trials)
        else:
            outcome = judge_stored(outcome, runner, baselines_dir=s.baselines_dir, trials=trials,
                                   against_version=s.baseline_version, allow_env_mismatch=s.allow_env_mismatch)
        return self.history.gate(outcome, runner, trials, s.allow_env_mismatch)  # the gate on history

    # -- end of session -----------------------------------------------------------------------------

    def finish(self) -> None:
        """Release every engine, then write verdicts.json and the report (when any case ran or was skipped)."""
        try:
            if self._pool is not None:
                self._pool.release()
        finally:
            if self.outcomes or self.skipped:
                self._results.start_fresh()  # a run that skipped everything still replaces the last one's files
                skipped = [CaseVerdict(case_id=case.id, engine=case.engine.kind, model=case.model.name,
                                       scenario=case.scenario.name, hardware=case.hardware,
                                       machine=self.settings.machine, status="skipped", reason=reason)
                           for case, reason in self.skipped]
                self._results.write_verdicts([r for o in self.outcomes for r in o.records()] + skipped)
                self.history.write(self.results_dir)  # history.json: the trends the report draws
                self.render_report()
            self.history.close()

    def render_report(self) -> None:
        """index.html + summary.md into the results directory (a report failure never hides test results)."""
        self.rendered = self._results.render_report()

    def counts(self) -> StatusCounts:
        return count_statuses([*(o.status for o in self.outcomes), *("skipped" for _ in self.skipped)])

    def summary_lines(self) -> list[str]:
        """The ``perfgate`` section of the terminal summary (:func:`perfgate.report.terminal.session_summary`)."""
        return session_summary([CaseLines(o.status, o.case.id, tuple(o.lines)) for o in self.outcomes],
                               [reason for _, reason in self.skipped], self.counts(),
                               machine=self.settings.machine, strict=self.settings.strict,
                               results_dir=self.results_dir, report_paths=self.report_paths,
                               report_error=self.report_error, history=self.history.summary_lines())
