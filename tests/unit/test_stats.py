"""The statistics: known cases, the correction, and hypothesis properties
(direction, scale, symmetry, monotonicity)."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from perfgate.judge.stats import (
    DEFAULT_ALPHA,
    GATING_METRICS,
    KEY_METRICS,
    MetricPolicy,
    compare_batch,
    compare_metric,
    compare_summaries,
    environment_mismatch,
    holm_alphas,
    policies_for,
    policy_for,
)

LOWER = MetricPolicy("lower", 0.05)
HIGHER = MetricPolicy("higher", 0.05)
BASE = [100.0, 102.0, 98.0]


def gmean(xs):
    return math.exp(np.mean(np.log(xs)))


# --- one metric -------------------------------------------------------------


def test_clear_large_slowdown_is_a_regression_with_the_one_line():
    v = compare_metric(BASE, [115.0, 113.0, 117.0], LOWER, metric="ttft_ms.p50")
    assert v.verdict == "regression"
    assert v.ratio == pytest.approx(gmean([115, 113, 117]) / gmean(BASE))
    assert v.change_pct == pytest.approx((v.ratio - 1) * 100)
    assert v.ci_low > 1.0 and v.ci_high > v.ratio
    assert (v.n_baseline, v.n_current, v.direction, v.observe_only) == (3, 3, "lower", False)
    line = v.one_line("vllm 0.32.0 / tiny-llama / cpu")
    assert line.startswith("ttft_ms.p50 +15.0% [+") and line.endswith("] vs vllm 0.32.0 / tiny-llama / cpu")


def test_clear_but_small_change_is_not_a_regression():
    v = compare_metric([100.0, 100.1, 99.9], [102.0, 102.1, 101.9], LOWER)
    assert v.ci_low > 1.0  # statistically clear ...
    assert v.verdict == "no_change"  # ... but the whole interval is inside the 5% that matters


def test_large_but_unclear_change_is_inconclusive_with_mde():
    v = compare_metric([80.0, 120.0, 100.0], [90.0, 130.0, 115.0], LOWER)
    assert v.ci_low < 1.0 < v.ci_high
    assert v.verdict == "inconclusive" and v.mde_pct > 10


def test_mde_shrinks_with_more_trials_and_less_noise():
    def trials(cv, n):  # n values with sample CV ~cv in log terms, no randomness
        z = np.linspace(-1, 1, n)
        return list(100 * np.exp(cv * z / z.std(ddof=1)))

    mde = [compare_metric(trials(s, n), trials(s, n), LOWER).mde_pct for s, n in ((0.1, 3), (0.1, 10), (0.02, 10))]
    assert mde[0] > mde[1] > mde[2] >= 5.0  # never below min_effect: the point gate needs that much


def test_higher_is_better_direction():
    assert compare_metric(BASE, [85.0, 86.0, 84.0], HIGHER).verdict == "regression"
    assert compare_metric(BASE, [115.0, 116.0, 114.0], HIGHER).verdict == "improvement"
    assert compare_metric(BASE, [115.0, 116.0, 114.0], LOWER).verdict == "regression"


def test_no_baseline_no_current_and_single_trials():
    assert compare_metric([], [1.0, 2.0], LOWER).verdict == "no_baseline"
    assert compare_metric([None, float("nan")], [1.0], LOWER).verdict == "no_baseline"
    assert compare_metric([1.0, 2.0], [], LOWER).verdict == "inconclusive"
    one = compare_metric([1.0], [2.0, 2.1], LOWER, metric="x")
    assert one.verdict == "inconclusive" and one.ratio == pytest.approx(math.sqrt(2 * 2.1))
    assert one.ci_low is None and one.mde_pct is None
    assert "no interval: 1 -> 2 trials" in one.one_line("ctx")


def test_none_and_non_finite_values_are_dropped():
    v = compare_metric([100.0, None, 102.0, math.inf, 98.0], BASE, LOWER)
    assert v.n_baseline == 3 and v.ratio == pytest.approx(1.0)


def test_zero_variance_is_exact():
    same = compare_metric([100.0, 100.0], [100.0, 100.0, 100.0], LOWER)
    assert (same.verdict, same.ratio, same.ci_low, same.ci_high) == ("no_change", 1.0, 1.0, 1.0)
    assert compare_metric([100.0, 100.0], [110.0, 110.0], LOWER).verdict == "regression"
    assert compare_metric([100.0, 100.0], [103.0, 103.0], LOWER).verdict == "no_change"
    one_sided = compare_metric([100.0, 100.0, 100.0], [120.0, 121.0, 119.0], LOWER)  # df from the noisy side
    assert one_sided.verdict == "regression" and one_sided.ci_low < one_sided.ratio < one_sided.ci_high


def test_non_positive_values_fall_back_to_linear_welch():
    collapsed = compare_metric([10.0, 12.0, 11.0], [0.0, 0.0, 0.0], policy_for("output_throughput"))
    assert collapsed.method == "linear-welch" and collapsed.verdict == "regression" and collapsed.ratio == 0.0
    zeros = compare_metric([0.0, 0.0], [0.0, 0.0], policy_for("goodput"))
    assert zeros.verdict == "no_change"
    assert compare_metric([0.0, 0.0], [1.0, 2.0], policy_for("goodput")).verdict == "inconclusive"


def test_error_rate_any_new_error_is_a_regression():
    p = policy_for("error_rate")
    assert p.absolute and p.min_effect == 0.0
    new = compare_metric([0.0, 0.0, 0.0], [0.0, 0.0625, 0.0], p, metric="error_rate")
    assert new.verdict == "regression" and new.method == "absolute"
    assert new.one_line("ctx") == "error_rate 0 -> 0.02083 (mean of 3 -> 3 trials) vs ctx"
    assert compare_metric([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], p).verdict == "no_change"
    assert compare_metric([0.1, 0.1], [0.0, 0.0], p).verdict == "improvement"


# --- policies ------------------------------------------------------------------


def test_default_policy_table():
    for m in ("ttft_ms.p50", "itl_per_token_ms.p50", "e2e_ms.p50"):
        assert policy_for(m) == MetricPolicy("lower", 0.05), m
    for m in ("output_throughput", "total_token_throughput", "goodput"):
        assert policy_for(m) == MetricPolicy("higher", 0.05), m
    # one gating metric per family: the redundant ones are shown, not gated
    for m in ("ttft_ms.mean", "itl_ms.p50", "tpot_ms.mean", "e2e_ms.p90"):
        assert policy_for(m) == MetricPolicy("lower", 0.05, observe_only=True), m
    for m in ("request_throughput", "per_user_tps.mean"):
        assert policy_for(m) == MetricPolicy("higher", 0.05, observe_only=True), m
    assert [m for m in KEY_METRICS if not policy_for(m).observe_only] == list(GATING_METRICS)
    for m in ("ttft_ms.p99", "e2e_ms.max", "itl_ms.std", "ttft_ms.min", "ttft_ms.p95"):
        assert policy_for(m).observe_only, m
    assert policy_for("per_user_tps.min") == MetricPolicy("higher", 0.05, observe_only=True)  # direction from family
    assert policy_for("some_new_metric").observe_only  # never fail on what we do not understand
    assert policy_for("gpu0.memory_used_mib").observe_only


def test_per_scenario_overrides():
    assert policy_for("ttft_ms.p50", {"ttft_ms.*": 0.2}).min_effect == 0.2
    assert policy_for("ttft_ms.p99", {"ttft_ms.p99": {"observe_only": False}}).observe_only is False
    assert policy_for("x", {"x": MetricPolicy("higher", 0.1)}) == MetricPolicy("higher", 0.1)
    assert policy_for("tpot_ms.mean", observe_only=["tpot*"]).observe_only
    pols = policies_for(["ttft_ms.p50", "output_throughput"], {"*": 0.1})
    assert {p.min_effect for p in pols.values()} == {0.1}
    with pytest.raises(ValueError):
        MetricPolicy("sideways")
    with pytest.raises(ValueError):
        MetricPolicy("lower", -0.1)


# --- several metrics: the correction -------------------------------------------


def test_holm_alphas_known_case():
    a = holm_alphas(np.array([0.001, 0.5, 0.01, 0.02]), 0.05)
    assert a == pytest.approx([0.05 / 4, 0.05, 0.05 / 3, 0.05 / 2])
    # stops at the first non-rejection: everything after is held at that step's level
    assert holm_alphas(np.array([0.001, 0.04, 0.03]), 0.05) == pytest.approx([0.05 / 3, 0.05 / 2, 0.05 / 2])
    # ties share the stricter level, whatever their order
    assert holm_alphas(np.array([0.01, 0.01 * (1 + 1e-12), 0.001]), 0.05) == pytest.approx([0.025, 0.025, 0.05 / 3])


@settings(max_examples=300)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=8), st.floats(0.001, 0.5))
def test_holm_alphas_match_the_step_down_procedure(ps, alpha):
    p = np.array(ps)
    srt = np.sort(p)
    assume(np.all((np.diff(srt) == 0) | (np.diff(srt) > srt[:-1] * 1e-9)))  # near-ties are grouped: see below
    a = holm_alphas(p, alpha)
    k = len(ps)
    assert np.all(a >= alpha / k - 1e-15) and np.all(a <= alpha + 1e-15)
    rejected, order = set(), np.argsort(p, kind="stable")
    for j, i in enumerate(order):
        if p[i] > alpha / (k - j):
            break
        rejected.add(int(i))
    assert {i for i in range(k) if p[i] <= a[i]} == rejected


def _trials(values: dict[str, list[float]]) -> list[dict[str, float]]:
    n = len(next(iter(values.values())))
    return [{m: v[i] for m, v in values.items()} for i in range(n)]


def test_correction_widens_intervals_with_more_metrics():
    b = _trials({"a": BASE, "b": BASE, "c": BASE})
    c = _trials({"a": [101.0, 99.0, 103.0], "b": [101.0, 99.0, 103.0], "c": [101.0, 99.0, 103.0]})
    pol = {"a": LOWER, "b": LOWER, "c": LOWER}
    one = compare_summaries(b, c, {"a": LOWER}, alpha=0.05)[0]
    three = compare_summaries(b, c, pol, alpha=0.05)[0]
    assert three.ci_high - three.ci_low > one.ci_high - one.ci_low
    assert one.level == pytest.approx(0.95) and three.level == pytest.approx(1 - 0.05 / 3)


def test_holm_lets_a_broad_slowdown_through_where_bonferroni_would_not():
    b = _trials({"a": BASE, "b": BASE, "c": BASE})
    c = _trials({"a": [130.0, 129.0, 131.0], "b": [107.0, 112.0, 117.0], "c": [120.0, 121.0, 119.0]})
    vs = {v.metric: v for v in compare_summaries(b, c, {"a": LOWER, "b": LOWER, "c": LOWER}, alpha=0.05)}
    assert vs["a"].level == pytest.approx(1 - 0.05 / 3)  # first step: Bonferroni
    assert vs["b"].level == pytest.approx(1 - 0.05)  # last step, once the others are rejected
    bonf = compare_metric(BASE, [107.0, 112.0, 117.0], LOWER, alpha=0.05 / 3)
    assert bonf.verdict == "inconclusive" and vs["b"].verdict == "regression"


def test_observe_only_and_absent_metrics_are_outside_the_family():
    b = [{"ttft_ms.p50": x, "ttft_ms.p99": 2 * x, "error_rate": 0.0} for x in BASE]
    c = [{"ttft_ms.p50": x * 1.3, "ttft_ms.p99": 2 * x, "error_rate": 0.0} for x in BASE]
    vs = {v.metric: v for v in compare_summaries(b, c, ["ttft_ms.p50", "ttft_ms.p99", "error_rate", "gpu0.power_w"])}
    assert set(vs) == {"ttft_ms.p50", "ttft_ms.p99", "error_rate"}  # no GPU figures on either side: left out
    assert vs["ttft_ms.p50"].level == pytest.approx(1 - DEFAULT_ALPHA)  # a family of one
    assert vs["ttft_ms.p99"].observe_only and vs["ttft_ms.p99"].level == pytest.approx(1 - DEFAULT_ALPHA)
    assert vs["ttft_ms.p50"].verdict == "regression" and vs["error_rate"].verdict == "no_change"


def test_compare_summaries_defaults_and_overrides():
    b = [{m: 10.0 + 0.01 * i for m in KEY_METRICS} | {"error_rate": 0.0} for i in range(3)]
    vs = compare_summaries(b, b)
    assert [v.metric for v in vs] == list(KEY_METRICS)
    assert {v.verdict for v in vs} == {"no_change"}
    slow = [{m: (v * 1.07 if m.startswith("ttft") else v) for m, v in t.items()} for t in b]
    by_name = {v.metric: v for v in compare_summaries(b, slow, KEY_METRICS, min_effect={"ttft_ms.*": 0.1},
                                                      observe_only=["ttft_ms.mean"])}
    assert by_name["ttft_ms.p50"].min_effect == 0.1 and by_name["ttft_ms.p50"].verdict == "no_change"
    assert by_name["ttft_ms.mean"].observe_only


def test_compare_batch_agrees_with_compare_summaries():
    rng = np.random.default_rng(3)
    metrics = ["ttft_ms.p50", "itl_ms.p50", "output_throughput", "ttft_ms.p99"]
    pols = policies_for(metrics)
    base = np.exp(rng.normal(0, 0.05, (200, 3, 4)))
    cur = np.exp(rng.normal(0, 0.05, (200, 4, 4)) + rng.choice([-0.15, 0.0, 0.15], (200, 1, 4)))
    batch = compare_batch(base, cur, list(pols.values()), 0.1)
    for r in range(200):
        one = compare_summaries(_rows(base[r], metrics), _rows(cur[r], metrics), pols, 0.1)
        assert [v.verdict for v in one] == list(batch[r])
    assert {"regression", "improvement", "no_change", "inconclusive"} <= set(batch.ravel())


def _rows(a, metrics):
    return [dict(zip(metrics, map(float, row))) for row in a]


# --- environment ------------------------------------------------------------------


def test_environment_mismatch_names_keys():
    assert environment_mismatch({"gpu": "A10G", "d": "1"}, {"gpu": "H100", "d": "1"}) == ["gpu: 'A10G' -> 'H100'"]
    assert environment_mismatch({"a": 1}, {"a": 1, "b": None}) == []
    # a key an older baseline never recorded is unknown, not changed; a key the current run lacks is None
    assert environment_mismatch({"a": 1}, {"a": 1, "torch": "2.13.0+cpu"}) == []
    assert environment_mismatch({"a": 1, "torch": "2.12"}, {"a": 1}) == ["torch: '2.12' -> None"]
    base = {"engine_version": "0.31.0", "engine_flags": "--x", "gpu_driver": "550"}
    cur = {"engine_version": "0.32.0", "engine_flags": "--x", "gpu_driver": "555"}
    assert [m.split(":")[0] for m in environment_mismatch(base, cur)] == ["engine_version", "gpu_driver"]
    assert environment_mismatch(base, cur, upgrade=True) == ["gpu_driver: '550' -> '555'"]
    assert environment_mismatch(base, cur, ignore=["gpu_driver"], upgrade=True) == []


# --- properties -------------------------------------------------------------------

samples = st.lists(st.floats(50, 200), min_size=2, max_size=6)
alphas = st.sampled_from([0.01, 0.05, 0.2])
SWAP = {"regression": "improvement", "improvement": "regression"}


@settings(max_examples=300)
@given(samples, samples, alphas)
def test_flipping_direction_swaps_regression_and_improvement(b, c, alpha):
    lo, hi = compare_metric(b, c, LOWER, alpha), compare_metric(b, c, HIGHER, alpha)
    assert hi.verdict == SWAP.get(lo.verdict, lo.verdict)
    assert (hi.ratio, hi.ci_low, hi.ci_high) == (lo.ratio, lo.ci_low, lo.ci_high)


@settings(max_examples=300)
@given(samples, samples, st.floats(1e-3, 1e3), alphas)
def test_invariant_to_units_and_scale(b, c, k, alpha):
    v1 = compare_metric(b, c, LOWER, alpha)
    v2 = compare_metric([x * k for x in b], [x * k for x in c], LOWER, alpha)
    assert v1.verdict == v2.verdict
    assert v1.ratio == pytest.approx(v2.ratio, rel=1e-9)
    assert v1.ci_low == pytest.approx(v2.ci_low, rel=1e-9) and v1.ci_high == pytest.approx(v2.ci_high, rel=1e-9)


@settings(max_examples=200)
@given(samples, samples, st.floats(1e-3, 1e3))
def test_summaries_invariant_to_scale(b, c, k):
    n = min(len(b), len(c))
    tb = [{"ttft_ms.p50": x, "output_throughput": 1e4 / x} for x in b]
    tc = [{"ttft_ms.p50": x, "output_throughput": 1e4 / y} for x, y in zip(c, c[::-1][:n])]
    scaled = lambda ts: [{m: v * k for m, v in t.items()} for t in ts]  # noqa: E731
    v1 = compare_summaries(tb, tc, ["ttft_ms.p50", "output_throughput"])
    v2 = compare_summaries(scaled(tb), scaled(tc), ["ttft_ms.p50", "output_throughput"])
    assert [v.verdict for v in v1] == [v.verdict for v in v2]
    assert [v.level for v in v1] == pytest.approx([v.level for v in v2])


@settings(max_examples=300)
@given(samples, samples, alphas)
def test_swapping_a_and_b_inverts_ratio_and_interval(b, c, alpha):
    ab, ba = compare_metric(b, c, LOWER, alpha), compare_metric(c, b, LOWER, alpha)
    assert ab.ratio * ba.ratio == pytest.approx(1.0)
    assert ab.ci_low * ba.ci_high == pytest.approx(1.0) and ab.ci_high * ba.ci_low == pytest.approx(1.0)
    assert ba.verdict == SWAP.get(ab.verdict, ab.verdict)
    assert ab.mde_pct == pytest.approx(ba.mde_pct)


@settings(max_examples=300)
@given(samples, st.floats(0.0, 0.5), st.floats(0.0, 0.5), alphas, st.sampled_from([LOWER, HIGHER]))
def test_larger_slowdowns_never_look_better(b, s1, s2, alpha, policy):
    assume(len(set(b)) > 1)
    small, large = sorted((s1, s2))
    worse = (lambda s: 1 + s) if policy.direction == "lower" else (lambda s: 1 / (1 + s))  # noqa: E731
    v_small = compare_metric(b, [x * worse(small) for x in b], policy, alpha)
    v_large = compare_metric(b, [x * worse(large) for x in b], policy, alpha)
    # "better" order: improvement < {no_change, inconclusive} < regression
    if v_small.verdict == "regression":
        assert v_large.verdict == "regression"
    if v_large.verdict == "improvement":
        assert v_small.verdict == "improvement"
    assert v_small.verdict != "improvement"  # a slowdown is never an improvement
    bad = (lambda r: r) if policy.direction == "lower" else (lambda r: 1 / r)  # noqa: E731
    assert bad(v_large.ratio) >= bad(v_small.ratio) * (1 - 1e-12)
