"""Running trials on the session's engines, and ending a case when its engine crashed or hung.

Every path that measures (a case's trials, a confirmation run, a baseline's
second boot, a saturation step, a live A/B's block) goes through
:meth:`TrialRunner.run`: it boots or reuses the engine, runs each trial
(:func:`perfgate.measure.trial.run_trial`), and after each trial looks at the
engine's process. One that died or hung is stopped (every process of its
group) so the next case boots afresh, and the batch ends with the fault line.
Boot failures and bad input end it the same way: :class:`Trials` says what ran
and, in ``error``, why it stopped; nothing is raised past the runner but an
interrupt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from perfgate.config.matrix import EngineConfig, ModelSpec, Scenario
from perfgate.engines.pool import Target, TargetPool
from perfgate.engines.provision import ProvisionError
from perfgate.engines.server import ServerError, describe_exit
from perfgate.schema.result import Result
from perfgate.schema.status import FaultClass

if TYPE_CHECKING:
    from perfgate.measure.trial import PreparedTrial


@dataclass(frozen=True)
class TrialBatch:
    """Which trials to run, on what."""

    engine: EngineConfig
    model: ModelSpec
    scenario: Scenario
    test_id: str  # names the result files: ``<test_id>.trial<N>``
    count: int = 1
    start: int = 0  # the first trial's number
    fresh_first: bool = False  # boot the engine afresh before the first trial (confirmation, baseline boots)
    quiesce_others: bool = False  # pause the pool's other engine while measuring (live A/B)
    rerun_client_bound: bool = True  # False: the caller handles client-bound trials (the live A/B drops blocks)
    prepared: Mapping[int, PreparedTrial] = field(default_factory=dict)  # trial -> prompts built before it


@dataclass(frozen=True)
class Trials:
    """The trials that ran, in order, and why the batch stopped early (None: it did not)."""

    results: tuple[Result, ...] = ()
    error: str | None = None  # "<fault class>: <what>" (then the server log tail), or the bad input's line


class RunsTrials(Protocol):
    """What the stored-baseline workflow, the saturation search and the live A/B need to measure."""

    def run(self, plan: TrialBatch) -> Trials: ...

    def boot(self, engine: EngineConfig, model: ModelSpec) -> str | None:
        """Boot (or reuse) an engine without measuring; the fault line, or None."""
        ...

    def prepare(self, engine: EngineConfig, model: ModelSpec, scenario: Scenario, trials: Iterable[int]
                ) -> tuple[dict[int, PreparedTrial], str | None]:
        """Build the prompts of ``trials`` on the engine now (they go in TrialBatch.prepared): (them, None),
        or ({}, why not)."""
        ...


class TrialRunner:
    """Runs trials on ``pool``'s engines and writes one result file per trial under ``results_dir``."""

    def __init__(self, pool: TargetPool, results_dir: Path, machine: str | None,
                 on_result: Callable[[Result], None] | None = None):
        self.pool, self.results_dir, self.machine = pool, results_dir, machine
        self.on_result = on_result  # the plugin's result hooks, applied before each file is written

    def run(self, plan: TrialBatch) -> Trials:
        """``plan.count`` trials; a client-bound trial is run again once (CLIENT_BOUND_RERUNS) unless the
        plan says the caller handles client-bound trials itself."""
        from perfgate.measure.trial import CLIENT_BOUND_RERUNS, run_trial  # late: keeps plugin loading light
        from perfgate.measure.workload import WorkloadError

        out: list[Result] = []
        try:
            for i, trial in enumerate(range(plan.start, plan.start + plan.count)):
                fresh = (plan.fresh_first and i == 0) or (trial > 0 and plan.scenario.spec.trial.restart_between_trials)
                target = self.pool.get(plan.engine, plan.model, fresh=fresh)
                if plan.quiesce_others:
                    self.pool.quiesce_others(target)
                out.append(run_trial(target, plan.scenario, trial=trial, test_id=plan.test_id,
                                     results_dir=self.results_dir, machine=self.machine,
                                     client_bound_reruns=CLIENT_BOUND_RERUNS if plan.rerun_client_bound else 0,
                                     on_result=self.on_result, prepared=plan.prepared.get(trial)))
                self._check_engine(target, out[-1])
        except ServerError as exc:
            return Trials(tuple(out), f"{exc.kind}: {exc}")
        except (WorkloadError, ProvisionError) as exc:
            return Trials(tuple(out), str(exc))
        return Trials(tuple(out))

    def boot(self, engine: EngineConfig, model: ModelSpec) -> str | None:
        """Install and boot ``engine`` serving ``model`` (kept in the pool) before anything is measured: a live
        A/B boots both sides first, so its block 0 is two adjacent trials like every other block."""
        try:
            self.pool.get(engine, model)
        except ServerError as exc:
            return f"{exc.kind}: {exc}"
        except ProvisionError as exc:
            return str(exc)
        return None

    def prepare(self, engine: EngineConfig, model: ModelSpec, scenario: Scenario, trials: Iterable[int]
                ) -> tuple[dict[int, PreparedTrial], str | None]:
        """The prompts of ``trials`` built and sized on ``engine`` (resumed for it, the pool's other engine
        paused): a live A/B's block then has only the warm-up between its two windows."""
        from perfgate.measure.trial import prepare_trials
        from perfgate.measure.workload import WorkloadError

        try:
            target = self.pool.get(engine, model)
            self.pool.quiesce_others(target)
            return prepare_trials(target, scenario, trials), None
        except ServerError as exc:
            return {}, f"{exc.kind}: {exc}"
        except (WorkloadError, ProvisionError) as exc:
            return {}, str(exc)

    def _check_engine(self, target: Target, result: Result) -> None:
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
