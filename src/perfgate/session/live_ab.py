"""Running a live A/B: both engines booted in this session, trials alternating in blocks, judged as they come.

The statistics are :mod:`perfgate.judge.sequential` (pure); this module runs
the trials: A is the reference engine (``--perf-compare-to``), B the case's
own engine. A block with a client-bound trial, or one whose trial lost more
than ``ab.max_disturbance`` of its cores to other processes
(:mod:`perfgate.measure.contention`), is dropped whole and re-run (counted in
the notes and drawn in the report; more than a tenth of the blocks and the
comparison fails). The A/B may run its own, shorter trial shape
(``ab.trial_requests``, ``ab.warmup_requests``). Both stay booted (the pool holds two), each trial has the
scenario's warm-up requests before its window, the order alternates
(A B, B A, ...), the side not being measured is paused (SIGSTOP: an idle
engine that polls would take CPU from the measured one on a small box), and
with ``boots_per_side`` > 1 both sides are rebooted at evenly spaced blocks
so boot-to-boot variance is part of the comparison. Both sides are installed
and booted before block 0, so block 0 is a pair like every other block (its
two trials used to be a boot apart); the time budget and the printed span
count from block 0 (installs and boots are shown apart). Each look's worth
of blocks has its prompts built and sized on both sides before its first
block, so only the warm-up sits between a block's two windows. The primary metric's
per-block ratios and each look's estimate go with the judgement
(:class:`~perfgate.schema.verdict.LiveRecord`), for the report's block chart.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from perfgate.config.matrix import EngineConfig, ModelSpec, Scenario, ScenarioFile
from perfgate.judge.sequential import SequentialPlan, judge_live, side_order
from perfgate.judge.verdict import JudgePolicy
from perfgate.measure.contention import disturbance_line
from perfgate.schema.result import Result
from perfgate.schema.verdict import BaselineRef, BlockPoint, Judgement, LiveRecord, LookPoint
from perfgate.session.outcome import CaseOutcome
from perfgate.session.trials import RunsTrials, TrialBatch


def plan_for(spec: ScenarioFile) -> SequentialPlan:
    """The sequential plan of a scenario (its ``ab`` group: ``ab_min_blocks``, ``ab_max_blocks``, ... in a file)."""
    ab = spec.ab
    return SequentialPlan(min_blocks=ab.min_blocks, max_blocks=ab.max_blocks, alpha=ab.alpha, look_every=ab.look_every,
                          primary_metric=ab.primary_metric)


def ab_scenario(scenario: Scenario) -> Scenario:
    """The scenario as the A/B runs it: its ``ab.trial_requests`` / ``ab.warmup_requests`` /
    ``ab.warmup_max_tokens`` when declared."""
    ab = scenario.spec.ab
    update = {k: v for k, v in (("num_requests", ab.trial_requests), ("warmup_requests", ab.warmup_requests),
                                ("warmup_max_tokens", ab.warmup_max_tokens)) if v is not None}
    if not update:
        return scenario
    return Scenario(scenario.name, scenario.family, scenario.spec.model_copy(update=update), scenario.root)


def why_dropped(results: list[Result], max_disturbance: float) -> tuple[str, str] | None:
    """(kind, why) when a block's trials measure something other than the engines - kind "client-bound" or
    "disturbed" - else None. The rule benchmarks/ab_noise.py applies to result files too."""
    for r in results:
        if r.status == "client_bound":
            return "client-bound", f"{r.test_id} trial {r.trial} client-bound ({r.failure_reason})"
    for r in results:
        if r.contention is not None and r.contention.taken() > max_disturbance:
            return "disturbed", (f"{r.test_id} trial {r.trial} disturbed: {disturbance_line(r.contention)} "
                                 f"(bound {max_disturbance:.0%})")
    return None


def _ratio(a: Result, b: Result, metric: str) -> float | None:
    x, y = a.summary.metrics.get(metric) if a.summary else None, b.summary.metrics.get(metric) if b.summary else None
    return y / x if isinstance(x, float | int) and isinstance(y, float | int) and x > 0 and y > 0 else None


def _look(judgement: Judgement) -> LookPoint | None:
    """The primary metric at a look; ``boundary``: the smallest worsening of the estimate called a regression
    here (the interval's half-width at this look's level, and at least min_effect)."""
    v = next((v for v in judgement.verdicts if v.metric == judgement.primary_metric), None)
    if v is None or v.ratio is None:
        return None
    boundary = None
    if v.ci_high is not None and v.ci_low is not None:
        half = max(math.log(v.ci_high / v.ratio), math.log1p(v.min_effect or 0.0))
        boundary = math.exp(half if v.direction == "lower" else -half)
    return LookPoint(blocks=v.n_current, ratio=v.ratio, ci_low=v.ci_low, ci_high=v.ci_high, boundary=boundary,
                     verdict=v.verdict)


def _span(results: list[Result]) -> tuple[float | None, float]:
    """(first window start to last window end, the windows' total length) over the comparison's trials."""
    timed = [(r.clock_origin_s, r.summary.duration_s) for r in results
             if getattr(r, "clock_origin_s", None) is not None and r.summary is not None]
    if not timed:
        return None, 0.0
    return max(t + d for t, d in timed) - min(t for t, _ in timed), sum(d for _, d in timed)


@dataclass(frozen=True)
class LiveSettings:
    """How the session runs a live comparison."""

    machine: str | None
    boots_per_side: int = 1  # engine boots per side; > 1: both rebooted at evenly spaced blocks
    time_budget_s: float | None = None  # per comparison, counted from block 0 (both sides already booted)


def run_live_ab(outcome: CaseOutcome, runner: RunsTrials, engine_a: EngineConfig, model_a: ModelSpec | None,
                settings: LiveSettings) -> CaseOutcome:
    """``outcome`` (the B side's case) with B's trials, A's trials and the live judgement."""
    case = outcome.case
    model_a = model_a or case.model
    if engine_a == case.engine and model_a == case.model:  # A/A: the same configuration, booted twice
        engine_a = replace(engine_a, id=f"{engine_a.id}~A")
    from perfgate.engines.sharing import size_for_ab

    engine_a, engine_b, sized = size_for_ab(engine_a, case.engine)  # both resident: fractions that fit together
    spec = case.scenario.spec
    scenario = ab_scenario(case.scenario)
    plan = plan_for(spec)
    policy = JudgePolicy(min_effect=spec.policy.min_effect, observe_only=tuple(spec.policy.observe_only))
    a_id = f"{engine_a.id}-{model_a.name}-{case.scenario.name}.reference"
    reboot_every = max(1, plan.max_blocks // settings.boots_per_side) if settings.boots_per_side > 1 else 0
    t0 = time.monotonic()
    block_s: list[float] = []
    clusters: list[int] = []  # boot pair of each block
    sides: dict[str, list[Result]] = {"A": [], "B": []}
    notes: list[str] = list(sized)
    judgement: Judgement | None = None
    discarded, max_discards = {"client-bound": 0, "disturbed": 0}, max(3, plan.max_blocks // 10)
    block, attempt = 0, 0
    dropped: list[tuple[int, tuple[Result, ...], str]] = []  # (position, its trials, why)
    looks: list[LookPoint] = []
    measured: list[Result] = []  # every trial of the comparison, dropped blocks' too (its span)
    ready: dict[str, dict] = {"A": {}, "B": {}}  # side -> attempt -> its prompts, built before the block
    prepare_s = 0.0

    def done(error: str | None = None) -> CaseOutcome:
        if error and measured:  # where a comparison that stopped got to
            notes.append(f"live A/B vs {engine_a.id}: stopped after {len(sides['B'])} kept blocks "
                         f"({len(measured)} trials) in {_span(measured)[0] or 0:.0f} s")
        return replace(outcome, results=tuple(sides["B"]), reference_results=tuple(sides["A"]), error=error,
                       judgement=judgement, notes=(*outcome.notes, *notes))

    for engine, model in ((engine_a, model_a), (case.engine, case.model)):  # both up before block 0: a real pair
        failed = runner.boot(engine, model)
        if failed:
            return done(f"{case.id}: {failed}")
    setup_s = time.monotonic() - t0
    measuring_since = time.monotonic()

    while block < plan.max_blocks:
        t_block = time.monotonic()
        first_try = len(clusters) == block  # a discarded block is re-run on the same boots
        fresh = first_try and bool(reboot_every) and block > 0 and block % reboot_every == 0
        if first_try:
            clusters.append((clusters[-1] + fresh) if clusters else 0)
        block_results: list[Result] = []
        if attempt not in ready["A"] or attempt not in ready["B"]:
            # The next look's worth of blocks' prompts, for both sides, before the block: between a block's two
            # windows there is then only the warm-up (sizing a trial's prompts through /tokenize: ~0.1 s).
            t_prep = time.monotonic()
            upcoming = range(attempt, attempt + plan.look_every)
            for side, engine, model in (("A", engine_a, model_a), ("B", engine_b, case.model)):
                got, failed = runner.prepare(engine, model, scenario, upcoming)
                if failed:
                    return done(f"{case.id}: {failed}")
                ready[side] = got
            prepare_s += time.monotonic() - t_prep
            t_block = time.monotonic()  # a block's time (the budget's step) leaves the preparation out
        for side in side_order(block):
            engine, model, test_id = (engine_a, model_a, a_id) if side == "A" else (engine_b, case.model, case.id)
            ran = runner.run(TrialBatch(engine, model, scenario, test_id, start=attempt, fresh_first=fresh,
                                       quiesce_others=True, rerun_client_bound=False,
                                       prepared={attempt: ready[side][attempt]} if attempt in ready[side] else {}))
            sides[side] += ran.results
            measured += ran.results
            if ran.error:
                return done(f"{case.id}: {ran.error}")
            r = ran.results[-1]
            block_results.append(r)
            if r.status in ("failed", "workload_not_delivered"):
                # Not a measurement (a fault, or the engine did not serve the asked workload): a reference
                # like that leaves B's figures answering nothing; B's own such trial fails its case.
                return done(f"{case.id}: reference {engine_a.id} trial {attempt} {r.status}: {r.failure_reason}"
                            if side == "A" else None)
            if r.status == "client_bound":
                break
        attempt += 1
        drop = why_dropped(block_results, spec.ab.max_disturbance)
        if drop is not None:
            kind, why = drop
            # A client-bound trial describes the load generator, a disturbed one a neighbour, not the engine:
            # the block is dropped whole (both sides), counted, and run again; too many and the comparison
            # ends, saying which.
            discarded[kind] += 1
            notes.append(f"block {block} discarded: {why}")
            dropped.append((block, tuple(block_results), why))
            for side in sides:
                sides[side] = [r for r in sides[side] if not any(r is b for b in block_results)]
            if sum(discarded.values()) > max_discards:
                cause = ("latencies would describe the load generator, not the engines" if kind == "client-bound"
                         else "other processes kept taking CPU from the engines: the box is not quiet enough "
                              "to compare them")
                return done(f"{case.id}: {kind} in {discarded[kind]} blocks ({sum(discarded.values())} dropped, "
                            f"more than {max_discards}); {cause}")
            continue
        block += 1
        block_s.append(time.monotonic() - t_block)
        elapsed = time.monotonic() - measuring_since
        final = (settings.time_budget_s is not None and bool(block_s)
                 and elapsed + max(block_s) > settings.time_budget_s)
        a_results, b_results = sides["A"], sides["B"]
        a_ver = a_results[0].environment.engine.version if a_results else None
        reference = BaselineRef(live_engine=engine_a.id, engine_version=a_ver, machine=settings.machine)
        context = f"{engine_a.id} ({a_ver or '?'}) live / {model_a.name} / {settings.machine or 'unnamed machine'}"
        judgement, stop = judge_live([r.summary.metrics for r in a_results], [r.summary.metrics for r in b_results],
                                     policy, plan, context=context, reference=reference, final=final,
                                     clusters=clusters, min_clusters=min(2, settings.boots_per_side),
                                     scenario=case.scenario.name)
        point = _look(judgement) if judgement.outcome is not None else None
        if point is not None:
            looks.append(point)
        if stop:
            break
    if any(discarded.values()):
        notes.append(" and ".join(f"{n} block(s) discarded as {kind}" for kind, n in discarded.items() if n)
                     + " and re-run")
    span, windows = _span(measured)
    span = span if span is not None else time.monotonic() - measuring_since
    notes.append(f"live A/B vs {engine_a.id}: {len(sides['B'])} blocks in {span:.0f} s"
                 + (f" ({windows / span:.0%} of it in measurement windows)" if windows and span > 0 else "")
                 + f" (prompts prepared between blocks: {prepare_s:.0f} s)"
                 + f"; installs and boots before block 0: {setup_s:.0f} s; " + (judgement.reason if judgement else ""))
    if judgement is not None and judgement.primary_metric is not None:
        primary = judgement.primary_metric
        v = next((v for v in judgement.verdicts if v.metric == primary), None)
        points = [BlockPoint(block=k, ratio=_ratio(a, b, primary), cluster=clusters[k])
                  for k, (a, b) in enumerate(zip(sides["A"], sides["B"]))]
        for k, trials, why in dropped:
            by_side = {r.test_id == a_id: r for r in trials}
            ratio = _ratio(by_side[True], by_side[False], primary) if len(by_side) == 2 else None
            points.append(BlockPoint(block=k, ratio=ratio, dropped=why, cluster=clusters[min(k, len(clusters) - 1)]))
        judgement = judgement.model_copy(update={"live": LiveRecord(
            primary_metric=primary, direction=v.direction if v else "lower", min_effect=v.min_effect if v else None,
            blocks=sorted(points, key=lambda p: (p.block, p.dropped is None)), looks=looks,
            span_s=round(span, 3), setup_s=round(setup_s, 3))})
    return done()
