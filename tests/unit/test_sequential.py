"""The live A/B's regression gate: one-sided group-sequential tests, primary metric, outcomes, against truth."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfgate.judge import groupseq
from perfgate.judge.robust import location
from perfgate.judge.sequential import (
    TTFT_TRIAL_STATISTIC,
    SequentialPlan,
    compare_sequential,
    default_primary_metric,
    judge_live,
    live_policies,
    metric_alphas,
    outcome_of,
    sequential_decide,
)
from perfgate.judge.stats import GATING_METRICS, KEY_METRICS, policies_for
from perfgate.judge.verdict import JudgePolicy
from perfgate.schema.verdict import BaselineRef, Judgement, MetricVerdict

REF = BaselineRef(live_engine="A")


def _block(rng, scale=1.0, noise=0.03, ttft_gmean=True):
    f = scale * float(np.exp(rng.normal(0, noise)))
    t = {"ttft_ms.p50": 20.0 * f, "itl_per_token_ms.p50": 5.0 * f, "e2e_ms.p50": 600.0 * f,
         "output_throughput": 300.0 / f, "error_rate": 0.0}
    return t | ({TTFT_TRIAL_STATISTIC: 19.0 * f} if ttft_gmean else {})


def _run(rng, plan, scale, noise, scenario="cpu-short-prompt-long-output", policy=None):
    a, b = [], []
    for _ in range(plan.max_blocks):
        a.append(_block(rng, noise=noise))
        b.append(_block(rng, scale=scale, noise=noise))
        j, stop = judge_live(a, b, policy or JudgePolicy(), plan, context="c", reference=REF, final=False,
                             scenario=scenario)
        if stop:
            return j, len(a)
    raise AssertionError("the last planned look must stop")


def test_primary_metric_defaults_by_family():
    assert default_primary_metric("cpu-short-prompt-long-output") == "itl_per_token_ms.p50"
    assert default_primary_metric("cpu-long-prompt-short-output") == TTFT_TRIAL_STATISTIC
    assert default_primary_metric("study-f-saturation") == "output_throughput"
    assert default_primary_metric("cpu-multi-turn") == default_primary_metric(None) == "e2e_ms.p50"


def test_metric_alphas_share_alpha():
    a = metric_alphas(["ttft", "itl", "e2e", "tput"], "itl", 0.01, 0.8)
    assert sum(a.values()) == pytest.approx(0.01) and a["itl"] == pytest.approx(0.008)
    assert a["ttft"] == pytest.approx(0.002 / 3)
    assert metric_alphas(["x", "y"], "absent", 0.01, 0.8) == {"x": 0.005, "y": 0.005}
    assert metric_alphas(["x"], "x", 0.01, 0.8) == {"x": 0.01} and metric_alphas([], "x", 0.01, 0.8) == {}


def test_ttft_gates_on_the_trial_geometric_mean_when_both_sides_have_it():
    rng = np.random.default_rng(0)
    with_g = [_block(rng) for _ in range(3)]
    pols = live_policies(JudgePolicy(), with_g, with_g)
    assert not pols[TTFT_TRIAL_STATISTIC].observe_only and pols["ttft_ms.p50"].observe_only
    old = [_block(rng, ttft_gmean=False) for _ in range(3)]  # result files written before ttft_ms.gmean
    pols = live_policies(JudgePolicy(), with_g, old)
    assert TTFT_TRIAL_STATISTIC not in pols and not pols["ttft_ms.p50"].observe_only


@settings(deadline=None, max_examples=40)
@given(st.floats(-0.3, 0.3), st.floats(0.001, 0.2), st.integers(3, 60), st.floats(0.0, 0.1))
def test_one_sided_rules_are_consistent(est, se, n, me):
    z_reg = groupseq.spending_boundaries([1.0], 0.01)[0]
    z_nc = groupseq.spending_boundaries([1.0], 0.05)[0]
    code, lo, hi, mde = sequential_decide(est, se, n - 1, z_reg, z_nc, 1.0, me)
    code = int(code)
    assert lo <= est <= hi
    if code == 0:  # regression: the interval excludes 0 on the worse side and the estimate is beyond min_effect
        assert lo > 0 and est > math.log1p(me)
    if code == 1:
        assert hi < 0 and est < -math.log1p(me)
    # flipping the metric's direction swaps regression and improvement
    flipped = int(sequential_decide(est, se, n - 1, z_reg, z_nc, -1.0, me)[0])
    assert {code, flipped} == {0, 1} or (code == flipped and code in (2, 3)) or {code, flipped} <= {2, 3}
    assert mde >= math.log1p(me)


def test_the_point_gate_does_not_cap_detection_at_twice_min_effect():
    """Design rule: min_effect m, detection target 2m. At the standard error that gives the test against 0
    95% power for a 2m change, the estimate is beyond m whenever that test rejects: the point gate costs
    nothing there, and detection of 2m is ~95% (it would be 50% if the target were m itself)."""
    rng = np.random.default_rng(1)
    m, n = 0.05, 40
    z = groupseq.spending_boundaries([1.0], 0.008)[0]
    t_c = float(np.asarray(__import__("scipy").stats.t.isf(groupseq.nominal_levels(z), n - 1)))
    se = math.log1p(2 * m) / (t_c + 1.685)  # t_{39} 95% quantile
    est = rng.normal(math.log1p(2 * m), se, 20000)
    code, *_ = sequential_decide(est, se, n - 1, z, 9.0, 1.0, m)
    assert 0.935 < np.mean(code == 0) < 0.965
    at_m, *_ = sequential_decide(rng.normal(math.log1p(m), se, 20000), se, n - 1, z, 9.0, 1.0, m)
    assert np.mean(at_m == 0) < 0.5


def test_aa_false_regressions_are_within_alpha_with_heavy_tails_and_correlated_blocks():
    """Simulated A/A through the plan's looks with the library's own estimator and boundaries (batch):
    t(4) noise, AR(1) neighbours (r 0.15), 4 gating metrics correlated 0.7, alpha 0.05 (so that 4000
    comparisons can see an excess)."""
    rng = np.random.default_rng(2)
    plan = SequentialPlan(min_blocks=6, max_blocks=30, look_every=6, alpha=0.05, futility=0.05)
    reps, n, k = 4000, plan.max_blocks, 4
    common = rng.standard_t(4, (reps, n, 1)) * 0.15 / math.sqrt(2)
    own = rng.standard_t(4, (reps, n, k)) * 0.15 / math.sqrt(2)
    e = math.sqrt(0.7) * common + math.sqrt(0.3) * own
    d = np.empty_like(e)
    d[:, 0] = e[:, 0]
    for i in range(1, n):
        d[:, i] = 0.15 * d[:, i - 1] + math.sqrt(1 - 0.15**2) * e[:, i]
    alphas = np.array([0.8, 0.2 / 3, 0.2 / 3, 0.2 / 3]) * plan.alpha
    failed, done = np.zeros(reps, bool), np.zeros(reps, bool)
    for look in plan.looks():
        mu, se, df = location(np.swapaxes(d[:, :look], 1, 2), "huber", min_correlation=plan.block_correlation)
        z = np.array([plan.boundary(look, a) for a in alphas])
        code, *_ = sequential_decide(mu, se, df, z, plan.boundary(look, plan.futility), 1.0, 0.0)
        reg = (code == 0).any(axis=1)
        failed |= ~done & reg
        done |= reg | (code == 2).all(axis=1)
    assert failed.mean() <= plan.alpha + 3 * math.sqrt(plan.alpha / reps)


def test_live_outcomes_say_what_they_are():
    rng = np.random.default_rng(3)
    plan = SequentialPlan(min_blocks=4, max_blocks=24, look_every=4)
    j, blocks = _run(rng, plan, 1.30, 0.02)
    assert j.outcome == "regression" and j.status == "regression" and blocks < 24
    assert j.primary_metric == "itl_per_token_ms.p50" and "itl_per_token_ms.p50" in {v.metric for v in j.regressions}
    j, _ = _run(rng, plan, 1.0 / 1.30, 0.02)
    assert j.outcome == "improvement" and j.status == "ok"  # reported, not gated
    j, _ = _run(rng, plan, 1.0, 0.005)
    assert j.outcome == "no_change" and j.status == "ok"
    j, blocks = _run(rng, plan, 1.0, 0.5)
    assert blocks == 24 and j.outcome == "inconclusive" and j.status == "ok"
    assert j.detectable_pct is not None and j.detectable_pct > 10 and "detectable" in j.reason


def test_an_improvement_spends_none_of_the_regression_gate():
    """One-sided: the gate's alpha is all on the worse side, so a regression is found at a smaller effect
    than the two-sided Holm design needed, and a large improvement never reads as a regression."""
    rng = np.random.default_rng(4)
    plan = SequentialPlan(min_blocks=6, max_blocks=6)
    a = [_block(rng, noise=0.05) for _ in range(6)]
    b = [_block(rng, scale=0.5, noise=0.05) for _ in range(6)]
    vs = compare_sequential(a, b, policies_for(list(GATING_METRICS)), plan, primary="e2e_ms.p50", final=True)
    assert outcome_of(vs) == "improvement" and not [v for v in vs if v.verdict == "regression"]


def test_a_rejected_metric_passes_its_alpha_on():
    """Weighted Holm: once the primary regresses, the fallback metrics are tested at the full alpha."""
    rng = np.random.default_rng(5)
    plan = SequentialPlan(min_blocks=12, max_blocks=12, alpha=0.01)
    a = [_block(rng, noise=0.02) for _ in range(12)]
    b = [_block(rng, scale=1.12, noise=0.02) for _ in range(12)]
    vs = {v.metric: v for v in compare_sequential(a, b, policies_for(list(GATING_METRICS)), plan,
                                                  primary="itl_per_token_ms.p50", final=True)}
    assert vs["itl_per_token_ms.p50"].verdict == "regression"
    # every gating metric regressed; the non-primary ones were drawn at the recycled (full) level
    assert all(vs[m].verdict == "regression" for m in ("ttft_ms.p50", "e2e_ms.p50", "output_throughput"))
    assert vs["e2e_ms.p50"].level > 1 - 2 * 0.01


def test_an_unplanned_final_look_is_judged_and_spends_the_rest():
    rng = np.random.default_rng(6)
    plan = SequentialPlan(min_blocks=6, max_blocks=24, look_every=6)
    a = [_block(rng, noise=0.3) for _ in range(9)]
    b = [_block(rng, noise=0.3) for _ in range(9)]
    j, stop = judge_live(a, b, JudgePolicy(), plan, context="c", reference=REF, final=False)
    assert not stop and j.outcome is None  # between planned looks: provisional
    j, stop = judge_live(a, b, JudgePolicy(), plan, context="c", reference=REF, final=True)
    assert stop and j.outcome in ("inconclusive", "no_change", "regression")
    assert plan.boundary(9, 0.01, final=True) < plan.boundary(12, 0.01)


def test_judgements_without_an_outcome_still_validate():
    old = {"status": "ok", "verdicts": [], "context": "x"}
    assert Judgement.model_validate(old).outcome is None
    j = Judgement(status="ok", outcome="inconclusive", detectable_pct=12.0, primary_metric="e2e_ms.p50")
    assert Judgement.model_validate_json(j.model_dump_json()) == j
    assert MetricVerdict(metric="m", verdict="inconclusive", n_baseline=1, n_current=1, direction="lower")


def test_default_plan_is_one_percent_one_sided_obf():
    plan = SequentialPlan()
    assert (plan.alpha, plan.spending, plan.estimator, plan.primary_share) == (0.01, "obf", "huber", 0.8)
    assert sum(plan.look_alpha(n) for n in range(plan.max_blocks + 1)) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        SequentialPlan(spending="linear")
    assert set(GATING_METRICS) <= set(KEY_METRICS)
