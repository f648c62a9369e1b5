"""Running a saturation scenario: raise the offered rate step by step until goodput stops rising.

The steps and the stop rule are :mod:`perfgate.measure.saturation` (pure);
this module runs each step as one trial (a client-bound step is re-run once
before it ends the search), writes the curve next to the trial files, and
returns the case's outcome with the curve, a note, and an SLO violation when
``assert_slo`` asks for the scenario's rate and the curve does not reach it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from perfgate.schema.result import SaturationStep
from perfgate.session.outcome import CaseOutcome
from perfgate.session.trials import RunsTrials, TrialBatch


def _rate(rate: float | None) -> str:
    return f"{rate}" if rate is not None else "none"


def run_saturation(outcome: CaseOutcome, runner: RunsTrials, results_dir: Path) -> CaseOutcome:
    """The saturation search of ``outcome``'s case; its curve is written to ``results_dir``."""
    from perfgate.measure.saturation import (
        should_stop,
        step_of,
        step_scenario,
        step_usable,
        summarize_saturation,
    )
    from perfgate.schema.files import write_text_atomic
    from perfgate.schema.result import saturation_path

    case, spec = outcome.case, outcome.case.scenario.spec
    sat, w = spec.saturation, spec.workload
    assert sat is not None
    steps: list[SaturationStep] = []
    notes: list[str] = []
    error: str | None = None
    stopped = "all steps run"
    last = None
    for rate in sat.step_rates():
        point = step_scenario(case.scenario, rate)
        ran = runner.run(TrialBatch(case.engine, case.model, point, f"{case.engine.id}-{case.model.name}-{point.name}"))
        if ran.error:  # a crashed or hung engine (or one that would not boot) ends the case, as in every other path
            return replace(outcome, error=f"{case.id}: {ran.error}", notes=(*outcome.notes, *notes))
        result = last = ran.results[-1]
        notes += [f"step at {rate:g} req/s was {why}; re-run"
                  for why in (result.client_health.earlier_attempts if result.client_health else ())]
        steps.append(step_of(result, rate))
        if len(steps) == 1 and not step_usable(steps[0]):
            error = (f"{case.id}: saturation: the first step ({rate:g} req/s) was {result.status}: "
                     f"{result.failure_reason}; no point of the curve is a measurement")
        if (why := should_stop(steps, sat.min_gain, sat.patience)) is not None:
            stopped = why
            break
    assert last is not None, "a saturation scenario has at least one step"
    env = last.environment
    curve = summarize_saturation(
        steps, test_id=case.id, scenario=case.scenario.name, engine=env.engine.name,
        engine_version=env.engine.version, model=env.model, slo_ttft_ms=w.slo_ttft_ms,
        slo_tpot_ms=w.slo_tpot_ms, slo_e2e_ms=w.slo_e2e_ms, stopped=stopped)
    write_text_atomic(saturation_path(results_dir, case.id), curve.model_dump_json(indent=1))
    notes.append(f"saturation: highest rate within SLO {_rate(curve.max_sustained_rate)} req/s, peak goodput "
                 f"{curve.peak_goodput or 0:.2f} req/s over {len(steps)} steps ({stopped})")
    violation = None
    reached = curve.max_sustained_rate is not None and curve.max_sustained_rate >= (w.request_rate or 0)
    if spec.checks.assert_slo and not reached:
        violation = (f"SLO violated: highest rate within SLO {_rate(curve.max_sustained_rate)} req/s "
                     f"< the scenario's {w.request_rate:g} req/s")
    return replace(outcome, saturation=curve, error=error, slo_violation=violation, notes=(*outcome.notes, *notes))
