"""The session: runs each case's trials, decides what to compare them with, and keeps the outcomes.

A case is N trials (one complete load run each). Per-trial summaries, never
pooled per-request samples, feed the verdict, because requests within one
trial share the same engine state and are not independent.

The session owns everything with side effects around the pure judge
(:mod:`perfgate.judge.verdict`): finding and loading the baseline of this
machine, the confirmation run on a freshly booted engine, baseline writes
from at least two boots, the live A/B against another engine, verdicts.json
and the report. It does not import pytest: the plugin turns an outcome's
:meth:`CaseOutcome.gate` into a pass, a failure or a skip.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from perfgate import __version__
from perfgate.config.matrix import Case, EngineConfig, ModelSpec
from perfgate.engines.pool import TargetPool
from perfgate.engines.provision import ProvisionError
from perfgate.engines.server import ServerError, describe_exit, log_tail
from perfgate.schema.result import RESULT_SUFFIX, Result, SaturationResult
from perfgate.schema.status import (
    NOT_COMPARED,
    UNUSABLE,
    CaseStatus,
    FaultClass,
    StatusCounts,
    StatusGroup,
    count_statuses,
    status_group,
)
from perfgate.schema.verdict import CaseVerdict, Judgement, VerdictsFile, case_status

BASELINE_BOOTS = 2
"""Engine boots a baseline update draws its trials from: boot-to-boot variance belongs in a baseline."""


@dataclass(frozen=True)
class Settings:
    """What the session was asked to do (from pytest options or the CLI)."""

    results_dir: Path
    cache_dir: Path
    baselines_dir: Path
    machine: str | None  # None: unnamed, compares with no stored baseline (measure.environment.machine_name)
    trials: int | None = None  # override every scenario's trial count
    update_baselines: bool = False
    baseline_version: str | None = None  # compare with another engine version's stored baseline
    allow_env_mismatch: bool = False
    strict: bool = False  # a case that compared nothing fails
    compare_to: EngineConfig | None = None  # live A/B: the reference engine, booted in this session
    compare_model: ModelSpec | None = None  # live A/B: the reference's model when it differs (a model change)
    time_budget_s: float | None = None  # per live comparison
    boots_per_side: int = 1  # live A/B: engine boots per side
    progress: Callable[[str], None] | None = None  # install/boot progress lines (None: the real stderr)
    endpoint_model: str | None = None  # the model name an external endpoint serves (else found from /v1/models)
    endpoint_auth_env: str | None = None  # variable holding the endpoint's token (else $PERFGATE_ENDPOINT_TOKEN)
    request_timeout_s: float | None = None  # override every scenario's timeout_s (per request)
    trial_timeout_s: float | None = None  # override every scenario's trial_timeout_s (per trial)
    boot_timeout_s: float | None = None  # override every engine's boot_timeout_s

    def reference_for(self, case: Case) -> tuple[EngineConfig, ModelSpec] | None:
        """The live A/B's side A for ``case``: ``compare_to`` and/or ``compare_model``, the case's own
        engine or model where one is not given (a model change on one engine; an engine change on one
        model). None: no live A/B, the case is judged against stored baselines."""
        if self.compare_to is None and self.compare_model is None:
            return None
        return self.compare_to or case.engine, self.compare_model or case.model


def _missing_model_path(model: ModelSpec) -> str | None:
    """A model given as a local path that is not there fails before any engine boots (hub ids pass)."""
    path = model.path
    if path is None or not (path.startswith(("/", "./", "../", "~"))):
        return None
    if Path(path).expanduser().exists():
        return None
    return f"model {model.name!r}: path {path} does not exist"


@dataclass
class CaseOutcome:
    """One case's trials and judgement; :attr:`status` comes from the one precedence rule."""

    case: Case
    machine: str | None
    results: list[Result] = field(default_factory=list)
    reference_results: list[Result] = field(default_factory=list)  # live A/B: the A side
    error: str | None = None  # engine failed to boot / crashed / bad input: no numbers at all
    judgement: Judgement | None = None
    baseline_written: str | None = None
    notes: list[str] = field(default_factory=list)  # what the session did (confirmation run, baseline changes)
    strict: bool = False
    slo_violation: str | None = None  # assert_slo: the SLOs the run missed (one line)
    saturation: SaturationResult | None = None  # a saturation scenario's curve

    @property
    def status(self) -> CaseStatus:
        return case_status(error=self.error, trial_statuses=[r.status for r in self.results],
                           judgement=self.judgement, baseline_written=self.baseline_written is not None,
                           slo_violated=self.slo_violation is not None)

    @property
    def lines(self) -> list[str]:
        if self.reference_results and self.judgement is not None and self.judgement.verdicts:
            return [*self.notes, *self.ab_table()]
        return [*self.notes, *(self.judgement.lines() if self.judgement else [])]

    def ab_table(self) -> list[str]:
        """The live A/B's verdict table: each judged metric with A's and B's medians, the change and its interval."""
        assert self.judgement is not None
        rows = [f"{'metric':24s} {'A median':>10s} {'B median':>10s} {'B vs A':>8s}  {'interval':18s} verdict"]
        for v in self.judgement.verdicts:
            if v.observe_only and v.metric not in ("tpot_ms.mean", "request_throughput"):
                continue
            interval = (f"[{(v.ci_low - 1) * 100:+.1f}%, {(v.ci_high - 1) * 100:+.1f}%]"
                        if v.ci_low is not None and v.ci_high is not None else "")
            change = f"{v.change_pct:+.1f}%" if v.change_pct is not None else ""
            a = f"{v.baseline_median:.4g}" if v.baseline_median is not None else "-"
            b = f"{v.current_median:.4g}" if v.current_median is not None else "-"
            tag = v.verdict.upper() if v.verdict == "regression" and v.judged else v.verdict
            rows.append(f"{v.metric:24s} {a:>10s} {b:>10s} {change:>8s}  {interval:18s} {tag}"
                        + (" (shown, not gated)" if v.observe_only else ""))
        return rows

    def gate(self) -> tuple[str, str | None]:
        """("pass" | "fail", one line). The test fails on a failed, client-bound or regressed case,
        and under ``strict`` on a case that compared nothing."""
        status = self.status
        if status == "failed":
            if self.error:
                return "fail", self.error
            bad = next(r for r in self.results if r.status == "failed")
            reason = bad.failure_reason or "failed"
            if bad.fault is not None:  # "<case>: <fault class>: trial N: <what>", like a server failure
                what = reason.removeprefix(f"{bad.fault}: ")
                return "fail", f"{self.case.id}: {bad.fault}: trial {bad.trial}: {what}"
            return "fail", f"{self.case.id}: trial {bad.trial} failed: {reason}"
        if status == "client_bound":
            bad = next(r for r in self.results if r.status == "client_bound")
            return "fail", (f"{self.case.id}: client-bound, latencies describe the load generator, not the engine: "
                            f"{bad.failure_reason}")
        if status == "workload_not_delivered":
            bad = next(r for r in self.results if r.status == "workload_not_delivered")
            return "fail", (f"{self.case.id}: workload not delivered, the figures describe another workload: "
                            f"trial {bad.trial}: {bad.failure_reason}")
        if status == "slo_violated":
            return "fail", f"{self.case.id}: {self.slo_violation}"
        if status == "regression":
            assert self.judgement is not None
            return "fail", self.judgement.failure_line()
        if status in NOT_COMPARED:
            reason = (self.judgement.reason if self.judgement else None) or status
            if self.strict:
                return "fail", f"{self.case.id}: NOT COMPARED under --perf-strict: {reason}"
            return "pass", f"NOT COMPARED: {reason}"
        return "pass", None

    def check(self) -> None:
        """Fail the calling pytest test with one line when :meth:`gate` says so (and a failed trial's
        server log tail below it)."""
        import pytest  # the session stays importable without pytest; only this call needs it

        action, line = self.gate()
        if action == "fail":
            pytest.fail((line or "") + self._failed_trial_log(), pytrace=False)

    def _failed_trial_log(self) -> str:
        if self.error or self.status != "failed":
            return ""  # a ServerError's message carries its log tail already
        bad = next((r for r in self.results if r.status == "failed"), None)
        log = bad.environment.engine.log_path if bad else None
        if not log or not Path(log).is_file():
            return ""
        return f"\n--- last lines of {log} ---\n{log_tail(Path(log), 15)}"

    def records(self) -> list[CaseVerdict]:
        """This case's entries in verdicts.json: the case, and for a live A/B its reference side."""
        out = [self.record()]
        if self.reference_results:
            first = self.reference_results[0]
            env = first.environment
            out.append(CaseVerdict(
                case_id=first.test_id, engine=env.engine.name, engine_version=env.engine.version, model=env.model,
                scenario=first.scenario, hardware=self.case.hardware, machine=self.machine, status="reference",
                reason=f"reference (A) of the live A/B of {self.case.id}"))
        return out

    def record(self) -> CaseVerdict:
        first = self.results[0] if self.results else None
        engine = first.environment.engine if first else None
        reason = self.error
        if reason is None and status_group(self.status) is StatusGroup.FAILED:
            reason = self.gate()[1]
        if reason is None and self.judgement is not None:
            reason = self.judgement.failure_line() or self.judgement.reason
        return CaseVerdict(
            case_id=self.case.id, engine=engine.name if engine else self.case.engine.kind,
            engine_version=(engine.version if engine else None) or (self.saturation.engine_version if self.saturation
                                                                     else None), model=self.case.model.name,
            scenario=self.case.scenario.name, hardware=self.case.hardware, machine=self.machine,
            status=self.status, reason=reason,
            baseline=self.judgement.baseline if self.judgement else None,
            verdicts=self.judgement.verdicts if self.judgement else [],
        )


@dataclass
class PerfSession:
    settings: Settings
    outcomes: list[CaseOutcome] = field(default_factory=list)
    report_paths: list[Path] = field(default_factory=list)
    report_error: str | None = None
    _pool: TargetPool | None = None
    _fresh_dir: bool = False
    skipped: list[tuple[Case, str]] = field(default_factory=list)  # (case, reason): counted and shown
    preflight_blocks: dict[str, str] = field(default_factory=dict)  # case id -> the preflight line that stops it

    def record_skip(self, case: Case, reason: str) -> None:
        """A case not run on this machine (no GPU, too few GPUs): counted in :meth:`counts`, shown in the summary."""
        self.skipped.append((case, reason))

    @property
    def results_dir(self) -> Path:
        return self.settings.results_dir

    @property
    def pool(self) -> TargetPool:
        if self._pool is None:
            self._pool = TargetPool(self.settings.cache_dir, self.results_dir / "logs",
                                    capacity=2 if self.settings.compare_to or self.settings.compare_model else 1,
                                    endpoint_model=self.settings.endpoint_model,
                                    endpoint_auth_env=self.settings.endpoint_auth_env)
            if self.settings.progress is not None:
                self._pool.progress = self.settings.progress
        return self._pool

    def trials_for(self, case: Case) -> int:
        return self.settings.trials or case.scenario.spec.trials

    def _start_fresh_results(self) -> None:
        """A results directory holds one run: trial files and verdicts of earlier runs are removed first,
        so the report never merges them into this run's figures."""
        if self._fresh_dir:
            return
        self._fresh_dir = True
        old = self.results_dir / "results"
        if old.is_dir() and any(old.glob(f"*{RESULT_SUFFIX}")):
            shutil.rmtree(old)
        (self.results_dir / "verdicts.json").unlink(missing_ok=True)

    def run_trials(self, case: Case, count: int, start: int = 0, fresh_first: bool = False,
                   engine: EngineConfig | None = None, model: ModelSpec | None = None,
                   test_id: str | None = None, quiesce: bool = False,
                   rerun_client_bound: bool = True) -> list[Result]:
        """``count`` trials of ``case``; a client-bound trial is run again once (CLIENT_BOUND_RERUNS)
        unless the caller handles client-bound trials itself (the live A/B drops the whole block)."""
        from perfgate.measure.trial import (  # late: keeps plugin loading light
            CLIENT_BOUND_RERUNS,
            run_trial,
        )

        out = []
        for i, trial in enumerate(range(start, start + count)):
            fresh = (fresh_first and i == 0) or (trial > 0 and case.scenario.spec.restart_between_trials)
            target = self.pool.get(engine or case.engine, model or case.model, fresh=fresh)
            if quiesce:
                self.pool.quiesce_others(target)
            out.append(run_trial(target, case.scenario, trial=trial, test_id=test_id or case.id,
                                 results_dir=self.results_dir, machine=self.settings.machine,
                                 client_bound_reruns=CLIENT_BOUND_RERUNS if rerun_client_bound else 0))
            self._after_trial(target, out[-1])
        return out

    def _after_trial(self, target, result: Result) -> None:
        """An engine that died or hung during a trial ends the case: it is stopped (every process of its
        group) and the next case boots afresh. Raises :class:`ServerError` with the fault class."""
        server = target.server
        name = server.config.id if server is not None else target.base_url
        log = server.log_path if server is not None else None
        rc = server.proc.poll() if server is not None and server.proc is not None else None
        if rc is not None:
            self.pool.release()  # reaps what is left of the group (an orphaned worker, say)
            raise ServerError(f"{name}: server exited with {describe_exit(rc)} during trial {result.trial} "
                              f"({result.failure_reason})", log, kind=FaultClass.ENGINE_CRASHED)
        if result.fault is FaultClass.ENGINE_HUNG:
            self.pool.release()  # SIGCONT, SIGTERM, SIGKILL: a stuck engine is never measured again
            what = (result.failure_reason or "").removeprefix(f"{FaultClass.ENGINE_HUNG}: ")
            raise ServerError(f"{name}: trial {result.trial}: {what}; the engine was stopped", log,
                              kind=FaultClass.ENGINE_HUNG)

    def with_timeouts(self, case: Case) -> Case:
        """``case`` with the session's timeout overrides applied (per request, per trial, boot)."""
        s = self.settings
        update = {k: v for k, v in (("timeout_s", s.request_timeout_s), ("trial_timeout_s", s.trial_timeout_s))
                  if v is not None}
        if update:
            scenario = case.scenario
            case = replace(case, scenario=replace(scenario, spec=scenario.spec.model_copy(update=update)))
        if s.boot_timeout_s is not None:
            case = replace(case, engine=replace(case.engine, boot_timeout_s=s.boot_timeout_s))
        return case

    def run_case(self, case: Case) -> CaseOutcome:
        from perfgate.measure.workload import (
            WorkloadError,  # late: keeps plugin loading light
        )

        self._start_fresh_results()
        case = self.with_timeouts(case)
        outcome = CaseOutcome(case, machine=self.settings.machine, strict=self.settings.strict)
        self.outcomes.append(outcome)
        if case.id in self.preflight_blocks:  # nothing installed or booted for a case preflight stops
            outcome.error = f"{case.id}: preflight: {self.preflight_blocks[case.id]}"
            return outcome
        missing = _missing_model_path(case.model)
        if missing:
            outcome.error = f"{case.id}: {missing}"
            return outcome
        try:
            side_a = self.settings.reference_for(case)
            if side_a is not None and case.scenario.spec.saturation is not None:
                outcome.error = f"{case.id}: a saturation scenario is not compared live (run it on each engine)"
                return outcome
            if side_a is not None:
                from perfgate.live import run_live_ab

                reference, reference_model = side_a
                if self.settings.boot_timeout_s is not None:  # --perf-boot-timeout: every engine, A included
                    reference = replace(reference, boot_timeout_s=self.settings.boot_timeout_s)
                try:
                    run_live_ab(self, outcome, reference, reference_model)
                finally:
                    self.pool.resume_all()
                return outcome
            if case.scenario.spec.saturation is not None:
                self._run_saturation(outcome)
                return outcome
            outcome.results = self.run_trials(case, self.trials_for(case))
            outcome.notes.extend(f"trial {r.trial} was re-run: the first attempt was {why}" for r in outcome.results
                                 for why in (r.client_health.earlier_attempts if r.client_health else ()))
            if outcome.status in UNUSABLE:
                return outcome
            if case.scenario.spec.assert_slo:
                from perfgate.measure.saturation import assert_slo_line

                outcome.slo_violation = assert_slo_line(outcome.results, case.scenario)
            if self.settings.update_baselines:
                self._update_baseline(outcome)
            else:
                self._judge_stored(outcome)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the case is incomplete, so nothing of it is judged
            outcome.error = f"{case.id}: interrupted: the run was stopped before this case completed"
            raise
        except ServerError as exc:
            outcome.error = f"{case.id}: {exc.kind}: {exc}"
        except (WorkloadError, ProvisionError) as exc:
            outcome.error = f"{case.id}: {exc}"
        finally:
            outcome.notes[:0] = self.pool.take_notes()  # e.g. which model an endpoint was sent
        return outcome

    def _run_saturation(self, outcome: CaseOutcome) -> None:
        """Raise the rate step by step until goodput stops rising; write the curve (measure.saturation)."""
        from perfgate.measure.saturation import (
            should_stop,
            step_of,
            step_scenario,
            step_usable,
            summarize_saturation,
        )
        from perfgate.measure.trial import CLIENT_BOUND_RERUNS, run_trial
        from perfgate.schema.files import write_text_atomic
        from perfgate.schema.result import saturation_path

        case, spec = outcome.case, outcome.case.scenario.spec
        sat = spec.saturation
        assert sat is not None
        steps, stopped = [], "all steps run"
        for rate in sat.step_rates():
            point = step_scenario(case.scenario, rate)
            target = self.pool.get(case.engine, case.model)
            step_id = f"{case.engine.id}-{case.model.name}-{point.name}"
            # A busy machine, once: a client-bound step is re-run before it ends the search.
            result = run_trial(target, point, trial=0, test_id=step_id, results_dir=self.results_dir,
                               machine=self.settings.machine, client_bound_reruns=CLIENT_BOUND_RERUNS)
            self._after_trial(target, result)  # a crashed or hung engine ends the case, as in every other path
            for why in result.client_health.earlier_attempts if result.client_health else ():
                outcome.notes.append(f"step at {rate:g} req/s was {why}; re-run")
            steps.append(step_of(result, rate))
            if len(steps) == 1 and not step_usable(steps[0]):
                outcome.error = (f"{case.id}: saturation: the first step ({rate:g} req/s) was {result.status}: "
                                 f"{result.failure_reason}; no point of the curve is a measurement")
            if (why := should_stop(steps, sat.min_gain, sat.patience)) is not None:
                stopped = why
                break
        env = result.environment
        outcome.saturation = summarize_saturation(
            steps, test_id=case.id, scenario=case.scenario.name, engine=env.engine.name,
            engine_version=env.engine.version, model=env.model, slo_ttft_ms=spec.slo_ttft_ms,
            slo_tpot_ms=spec.slo_tpot_ms, slo_e2e_ms=spec.slo_e2e_ms, stopped=stopped)
        write_text_atomic(saturation_path(self.results_dir, case.id), outcome.saturation.model_dump_json(indent=1))
        s = outcome.saturation
        outcome.notes.append(
            f"saturation: highest rate within SLO {s.max_sustained_rate if s.max_sustained_rate is not None else 'none'}"
            f" req/s, peak goodput {s.peak_goodput or 0:.2f} req/s over {len(steps)} steps ({stopped})")
        if spec.assert_slo and (s.max_sustained_rate is None or s.max_sustained_rate < (spec.request_rate or 0)):
            outcome.slo_violation = (f"SLO violated: highest rate within SLO "
                                     f"{s.max_sustained_rate if s.max_sustained_rate is not None else 'none'} req/s "
                                     f"< the scenario's {spec.request_rate:g} req/s")

    # -- stored baselines -------------------------------------------------------------------------

    def _policy(self, case: Case, upgrade: bool = False):
        from perfgate.judge.verdict import JudgePolicy

        spec = case.scenario.spec
        return JudgePolicy(min_effect=spec.min_effect, observe_only=tuple(spec.observe_only),
                           allow_env_mismatch=self.settings.allow_env_mismatch, upgrade=upgrade)

    def _judge_stored(self, outcome: CaseOutcome) -> None:
        from perfgate.judge.baselines import (
            BaselineError,
            find_baseline,
            fingerprint,
            key_of,
            load_baseline,
            machines_with,
            versions_available,
        )
        from perfgate.judge.verdict import judge_against_baseline, not_found

        first = outcome.results[0]
        if self.settings.machine is None:
            outcome.judgement = Judgement(
                status="not_comparable", context="stored baselines",
                reason="not comparable: this machine has no name (--perf-machine NAME or PERFGATE_MACHINE); "
                       "stored baselines are compared only on the machine that wrote them")
            return
        against = self.settings.baseline_version
        key = key_of(first, engine_version=against)
        path = find_baseline(self.settings.baselines_dir, key)
        if path is None:
            outcome.judgement = not_found(key, versions_available(self.settings.baselines_dir, key),
                                          machines_with(self.settings.baselines_dir, key))
            return
        try:
            baseline = load_baseline(path)
        except BaselineError as exc:
            outcome.error = f"{outcome.case.id}: {exc}"
            return
        policy = self._policy(outcome.case, upgrade=against is not None)

        def judge() -> Judgement:
            trials = [r.summary.metrics for r in outcome.results if r.summary is not None]
            return judge_against_baseline(trials, fingerprint(first), baseline, policy, str(path))

        outcome.judgement = judge()
        if outcome.judgement.status == "regression":
            # Confirm on a freshly booted engine before failing anyone's build: a bad boot is not a regression.
            outcome.notes.append("regression suspected; confirmation run on a fresh boot ...")
            outcome.results += self.run_trials(outcome.case, self.trials_for(outcome.case),
                                               start=len(outcome.results), fresh_first=True)
            if outcome.status in UNUSABLE:
                return
            outcome.judgement = judge()

    def _update_baseline(self, outcome: CaseOutcome) -> None:
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
            outcome.results += self.run_trials(case, self.trials_for(case), start=len(outcome.results),
                                               fresh_first=True)
        if outcome.status in UNUSABLE:
            return
        if any(r.summary is None or r.summary.failed for r in outcome.results):
            outcome.notes.append("baseline not written: the run had request errors")
            return
        first = outcome.results[0]
        baseline = Baseline(
            key=key_of(first), fingerprint=fingerprint(first), calibration=calibrate(), boots=boots,
            provenance=Provenance(created_at=now_iso(), git_commit=git_commit(), perfgate_version=__version__,
                                  results=[f"{r.test_id}.trial{r.trial}" for r in outcome.results]),
            trials=[r.summary.metrics for r in outcome.results if r.summary is not None],
        )
        try:
            path, changes = save_baseline(self.settings.baselines_dir, baseline, watch=KEY_METRICS)
        except BaselineError as exc:  # an unreadable baseline in the way is reported, never replaced
            outcome.error = f"{case.id}: baseline not written: {exc}"
            return
        outcome.baseline_written = str(path)
        outcome.notes.append(f"baseline written: {path} ({len(baseline.trials)} trials, {boots} boot(s))")
        outcome.notes.extend(f"  {c}" for c in changes)

    # -- end of session -----------------------------------------------------------------------------

    def finish(self) -> None:
        try:
            if self._pool is not None:
                self._pool.release()
        finally:
            if self.outcomes or self.skipped:
                if not self.outcomes:
                    self._start_fresh_results()  # a run that skipped everything still replaces the last one's files
                skipped = [CaseVerdict(case_id=case.id, engine=case.engine.kind, model=case.model.name,
                                       scenario=case.scenario.name, hardware=case.hardware, machine=self.settings.machine,
                                       status="skipped", reason=reason) for case, reason in self.skipped]
                VerdictsFile(cases=[r for o in self.outcomes for r in o.records()] + skipped).write(
                    self.results_dir / "verdicts.json")
                self.render_report()

    def render_report(self) -> None:
        """index.html + summary.md into the results directory (a report failure never hides test results)."""
        from perfgate.report import render_report

        try:
            self.report_paths = render_report([self.results_dir], self.results_dir)
        except Exception as exc:  # noqa: BLE001 - reported in the terminal summary
            self.report_error = f"report not rendered: {type(exc).__name__}: {exc}"

    def counts(self) -> StatusCounts:
        return count_statuses([*(o.status for o in self.outcomes), *("skipped" for _ in self.skipped)])

    def summary_lines(self) -> list[str]:
        lines = []
        for o in self.outcomes:
            label = "NOT COMPARED" if o.status in NOT_COMPARED else o.status.upper()
            lines.append(f"{label:13s} {o.case.id}")
            lines.extend(f"    {line}" for line in o.lines)
        reasons: dict[str, int] = {}
        for _, reason in self.skipped:
            reasons[reason] = reasons.get(reason, 0) + 1
        lines.extend(f"{'SKIPPED':13s} {n} case(s): {reason}" for reason, n in reasons.items())
        c = self.counts()
        machine = repr(self.settings.machine) if self.settings.machine else "(unnamed)"
        lines.append(f"{c.cases} cases on machine {machine}: {c.compared} compared "
                     f"({c.regression} regressed), {c.not_compared} NOT COMPARED, {c.failed} failed"
                     + (f", {c.baseline_written} baselines written" if c.baseline_written else "")
                     + (f", {c.skipped} skipped" if c.skipped else ""))
        if c.not_compared and not self.settings.strict:
            lines.append("    cases that compared nothing pass; --perf-strict fails them")
        lines.append(f"results and server logs: {self.results_dir}")
        if self.report_paths:
            lines.append(f"report: {self.report_paths[0]} (summary: {self.report_paths[1]})")
        if self.report_error:
            lines.append(self.report_error)
        return lines
