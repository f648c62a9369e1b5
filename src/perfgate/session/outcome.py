"""A case's outcome: what was measured and judged, the gate's decision on it, and its entries in verdicts.json.

:class:`CaseOutcome` is a value: each step of a case (trials, the stored
baseline, a saturation search, a live A/B) returns a new one
(``dataclasses.replace``) and nothing changes it afterwards. Its status comes
from the one precedence rule (:func:`perfgate.schema.verdict.case_status`).
The gate says pass or fail with one line; failing the test is the plugin's
job (:class:`CaseFailed` is what :meth:`CaseOutcome.check` raises, and the
plugin turns it into a one-line pytest failure).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from perfgate.config.matrix import Case
from perfgate.engines.server import log_tail
from perfgate.report.terminal import ab_table
from perfgate.schema.result import Result, SaturationResult
from perfgate.schema.status import NOT_COMPARED, CaseStatus, StatusGroup, TrialStatus, status_group
from perfgate.schema.verdict import CaseVerdict, Judgement, case_status


class Gate(NamedTuple):
    """The gate's decision on a case: ``action`` and the one line that says why (None: nothing to say)."""

    action: Literal["pass", "fail"]
    line: str | None = None


class CaseFailed(AssertionError):
    """A case the gate fails; the message is the one line, then a failed trial's server log tail."""


@dataclass(frozen=True)
class CaseOutcome:
    """One case's trials and judgement."""

    case: Case
    machine: str | None
    results: tuple[Result, ...] = ()
    reference_results: tuple[Result, ...] = ()  # live A/B: the A side
    error: str | None = None  # engine failed to boot / crashed / bad input: no numbers at all
    judgement: Judgement | None = None
    baseline_written: str | None = None
    notes: tuple[str, ...] = ()  # what the session did (confirmation run, baseline changes)
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
        """What the terminal shows under the case: the notes, then the verdicts (a live A/B as a table)."""
        if self.reference_results and self.judgement is not None and self.judgement.verdicts:
            return [*self.notes, *ab_table(self.judgement)]
        return [*self.notes, *(self.judgement.lines() if self.judgement else [])]

    def _first(self, status: TrialStatus) -> Result:
        return next(r for r in self.results if r.status == status)

    def gate(self) -> Gate:
        """Fail on a failed, client-bound, undelivered, SLO-violating or regressed case, and under
        ``strict`` on a case that compared nothing or was inconclusive; pass otherwise (a NOT COMPARED or
        INCONCLUSIVE case says so)."""
        status = self.status
        if status == "failed":
            if self.error:
                return Gate("fail", self.error)
            bad = self._first("failed")
            reason = bad.failure_reason or "failed"
            if bad.fault is not None:  # "<case>: <fault class>: trial N: <what>", like a server failure
                what = reason.removeprefix(f"{bad.fault}: ")
                return Gate("fail", f"{self.case.id}: {bad.fault}: trial {bad.trial}: {what}")
            return Gate("fail", f"{self.case.id}: trial {bad.trial} failed: {reason}")
        if status == "client_bound":
            return Gate("fail", f"{self.case.id}: client-bound, latencies describe the load generator, not the "
                                f"engine: {self._first('client_bound').failure_reason}")
        if status == "workload_not_delivered":
            bad = self._first("workload_not_delivered")
            return Gate("fail", f"{self.case.id}: workload not delivered, the figures describe another workload: "
                                f"trial {bad.trial}: {bad.failure_reason}")
        if status == "slo_violated":
            return Gate("fail", f"{self.case.id}: {self.slo_violation}")
        if status == "regression":
            assert self.judgement is not None
            return Gate("fail", self.judgement.failure_line())
        if status == "inconclusive":
            assert self.judgement is not None
            reason = self.judgement.reason or "no gating metric decided"
            if self.strict:
                return Gate("fail", f"{self.case.id}: INCONCLUSIVE under --perf-strict: {reason}")
            return Gate("pass", f"INCONCLUSIVE: {reason}")
        if status in NOT_COMPARED:
            reason = (self.judgement.reason if self.judgement else None) or status
            if self.strict and not (self.judgement and self.judgement.first_run):  # docs/statistics.md: first run
                return Gate("fail", f"{self.case.id}: NOT COMPARED under --perf-strict: {reason}")
            return Gate("pass", f"NOT COMPARED: {reason}")
        return Gate("pass")

    def failure(self) -> str | None:
        """The whole failure message when the gate fails (the line, and a failed trial's server log tail)."""
        action, line = self.gate()
        return (line or "") + self._failed_trial_log() if action == "fail" else None

    def check(self) -> None:
        """Raise :class:`CaseFailed` when the gate fails the case (under pytest: a one-line test failure)."""
        message = self.failure()
        if message is not None:
            raise CaseFailed(message)

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
            reason = self.gate().line
        if reason is None and self.judgement is not None:
            reason = self.judgement.failure_line() or self.judgement.reason
        version = (engine.version if engine else None) or (self.saturation.engine_version if self.saturation
                                                           else None)
        return CaseVerdict(
            case_id=self.case.id, engine=engine.name if engine else self.case.engine.kind, engine_version=version,
            model=self.case.model.name, scenario=self.case.scenario.name, hardware=self.case.hardware,
            machine=self.machine, status=self.status, reason=reason,
            baseline=self.judgement.baseline if self.judgement else None,
            verdicts=self.judgement.verdicts if self.judgement else [],
            outcome=self.judgement.outcome if self.judgement else None,
            detectable_pct=self.judgement.detectable_pct if self.judgement else None,
            live=self.judgement.live if self.judgement else None,
        )


def trial_notes(results: tuple[Result, ...]) -> tuple[str, ...]:
    """A note for each trial that was re-run because its first attempt was client-bound."""
    return tuple(f"trial {r.trial} was re-run: the first attempt was {why}" for r in results
                 for why in (r.client_health.earlier_attempts if r.client_health else ()))
