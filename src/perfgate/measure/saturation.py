"""Saturation: the highest request rate an engine sustains within a scenario's SLOs.

The search raises the offered rate step by step (each step an open-loop
duration run, :func:`step_scenario`) and stops once goodput — completed
requests meeting every SLO per second — has not risen by ``min_gain`` for
``patience`` steps. A step is *within SLO* when its run was usable, its error
rate is at most 1%, and its p99 TTFT, p99 TPOT and p99 e2e each meet the SLO
set on the scenario. The answer is the highest step rate below the first step
that misses an SLO. Pure functions over results; the session runs the steps.
Definitions: docs/metrics.md "Saturation".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping

from perfgate.config.matrix import Scenario
from perfgate.schema.result import Result, SaturationResult, SaturationStep

MAX_ERROR_RATE = 0.01
"""A step with more failed requests than this fraction is not sustained, whatever its latencies."""
POOL_MARGIN = 1.5
"""Prepared requests per step: this many times rate × duration (plus a few), so the pool never runs dry."""


def step_scenario(scenario: Scenario, rate: float) -> Scenario:
    """The scenario of one step: open loop at ``rate`` for the step duration, one trial, no assertion."""
    spec = scenario.spec
    sat = spec.saturation
    assert sat is not None
    n = math.ceil(rate * sat.step_duration_s * POOL_MARGIN) + 4
    point = spec.model_copy(update={
        "request_rate": rate, "concurrency": None, "duration_s": sat.step_duration_s, "num_requests": n,
        "ramp_to_rate": None, "saturation": None, "assert_slo": False, "trials": 1, "sweep": {}})
    return Scenario(f"{scenario.name}[request_rate={rate:g}]", scenario.family, point, scenario.root)


def slo_misses(metrics: Mapping[str, float | None], slo_ttft_ms: float | None, slo_tpot_ms: float | None,
               slo_e2e_ms: float | None) -> list[str]:
    """Which p99s exceed their SLO (``<=`` meets), as short reasons; a missing p99 misses its SLO."""
    out = []
    for key, slo, label in (("ttft_ms.p99", slo_ttft_ms, "TTFT"), ("tpot_ms.p99", slo_tpot_ms, "TPOT"),
                            ("e2e_ms.p99", slo_e2e_ms, "e2e")):
        if slo is None:
            continue
        v = metrics.get(key)
        if v is None:
            out.append(f"no p99 {label}")
        elif v > slo:
            out.append(f"p99 {label} {v:.1f} ms > {slo:g} ms")
    return out


def _errors_only_within_limit(result: Result, error_rate: float | None) -> bool:
    """A step whose trial failed only because a few requests were refused or cut (at most
    :data:`MAX_ERROR_RATE`; an engine that crashed or hung never gets here: the session ends the case)
    is still a point of the curve: overload shows as errors before it shows as nothing."""
    return (result.status == "failed" and error_rate is not None and error_rate <= MAX_ERROR_RATE
            and result.summary is not None and result.summary.completed > 0)


def step_usable(step: SaturationStep) -> bool:
    """Whether a step's trial is a measurement: ok, or failed on at most :data:`MAX_ERROR_RATE` of requests."""
    return step.status == "ok" or (step.status == "failed" and step.error_rate is not None
                                   and step.error_rate <= MAX_ERROR_RATE and step.completed > 0)


def step_of(result: Result, rate: float) -> SaturationStep:
    """One step's point on the curve, from its trial's result."""
    w = result.workload
    m = result.summary.metrics if result.summary else {}
    reasons = []
    err = m.get("error_rate")
    if result.status != "ok" and not _errors_only_within_limit(result, err):
        reasons.append(f"trial {result.status}: {result.failure_reason}")
    if err is not None and err > MAX_ERROR_RATE:
        reasons.append(f"error rate {err:.1%}")
    reasons += slo_misses(m, w.slo_ttft_ms, w.slo_tpot_ms, w.slo_e2e_ms)
    return SaturationStep(
        rate=rate, test_id=result.test_id, status=result.status,
        completed=result.summary.completed if result.summary else 0,
        request_throughput=m.get("request_throughput"), goodput=m.get("goodput"),
        ttft_ms_p99=m.get("ttft_ms.p99"), tpot_ms_p99=m.get("tpot_ms.p99"), e2e_ms_p99=m.get("e2e_ms.p99"),
        error_rate=err, within_slo=not reasons, reason="; ".join(reasons) or None)


def should_stop(steps: list[SaturationStep], min_gain: float, patience: int) -> str | None:
    """Why the search stops after these steps, or None to go on.

    Stops when the last step's trial was unusable (failed, client-bound, not
    delivered: higher rates would not be measurements either) or when goodput
    has not risen above ``(1 + min_gain)`` × the best earlier goodput for
    ``patience`` consecutive steps.
    """
    if not steps:
        return None
    last = steps[-1]
    if not step_usable(last):
        return f"step at {last.rate:g} req/s was {last.status}"
    stall, best = 0, None
    for s in steps:
        g = s.goodput or 0.0
        if best is not None and g <= best * (1.0 + min_gain):
            stall += 1
        else:
            stall = 0
        best = g if best is None else max(best, g)
    if stall >= patience:
        return f"goodput stopped rising (no gain above {min_gain:.0%} for {stall} step(s))"
    return None


def summarize_saturation(steps: list[SaturationStep], **fields) -> SaturationResult:
    """The saturation result: the curve, the highest rate before the first SLO miss, peak goodput."""
    sustained = None
    for s in steps:
        if not s.within_slo:
            break
        sustained = s.rate
    goodputs = [s.goodput for s in steps if s.goodput is not None]
    return SaturationResult(steps=steps, max_sustained_rate=sustained,
                            peak_goodput=max(goodputs) if goodputs else None, **fields)


def assert_slo_line(results: list[Result], scenario: Scenario) -> str | None:
    """``assert_slo`` for an ordinary scenario: the median over trials of each p99 must meet its SLO.

    Median over trials rather than any trial: one noisy trial on a shared box
    should not fail an absolute assertion that the run as a whole meets.
    """
    s = scenario.spec
    rows = [r.summary.metrics for r in results if r.summary is not None]
    if not rows:
        return None
    med: dict[str, float | None] = {}
    for key in ("ttft_ms.p99", "tpot_ms.p99", "e2e_ms.p99"):
        vals = [v for m in rows if (v := m.get(key)) is not None]
        med[key] = statistics.median(vals) if vals else None
    misses = slo_misses(med, s.slo_ttft_ms, s.slo_tpot_ms, s.slo_e2e_ms)
    return f"SLO violated (median of {len(rows)} trials): " + "; ".join(misses) if misses else None
