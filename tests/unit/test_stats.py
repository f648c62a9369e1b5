"""The statistics: known cases, and hypothesis properties (direction, scale, symmetry, monotonicity)."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from perfgate.stats import MetricPolicy, compare_metric, compare_summaries, environment_mismatch, policy_for

LOWER = MetricPolicy("lower", 0.05)
HIGHER = MetricPolicy("higher", 0.05)
BASE = [100.0, 102.0, 98.0]


def test_clear_large_slowdown_is_a_regression_with_the_one_line():
    v = compare_metric("ttft_ms.p50", BASE, [115.0, 113.0, 117.0], LOWER)
    assert v.verdict == "regression"
    assert v.ratio == pytest.approx(115 / math.exp(np.mean(np.log(BASE))), rel=1e-3)
    line = v.one_line("vllm 0.32.0 / tiny-llama / cpu")
    assert line.startswith("ttft_ms.p50 +15.0% [+") and line.endswith("] vs vllm 0.32.0 / tiny-llama / cpu")


def test_clear_but_small_change_is_not_a_regression():
    v = compare_metric("ttft_ms.p50", [100.0, 100.1, 99.9], [102.0, 102.1, 101.9], LOWER)
    assert v.ci_low > 1.0  # statistically clear ...
    assert v.verdict == "no_change"  # ... but below the 5% that matters


def test_noisy_data_is_inconclusive_with_mde():
    v = compare_metric("ttft_ms.p50", [80.0, 120.0, 100.0], [90.0, 130.0, 115.0], LOWER)
    assert v.verdict == "inconclusive" and v.mde_pct > 10


def test_higher_is_better_direction():
    assert compare_metric("output_throughput", BASE, [85.0, 86.0, 84.0], HIGHER).verdict == "regression"
    assert compare_metric("output_throughput", BASE, [115.0, 116.0, 114.0], HIGHER).verdict == "improvement"


def test_no_baseline_and_single_trials():
    assert compare_metric("x", [], [1.0], LOWER).verdict == "no_baseline"
    assert compare_metric("x", [1.0], [2.0], LOWER).verdict == "inconclusive"


def test_error_rate_any_new_error_is_a_regression():
    p = policy_for("error_rate")
    assert compare_metric("error_rate", [0.0, 0.0, 0.0], [0.0, 0.0625, 0.0], p).verdict == "regression"
    assert compare_metric("error_rate", [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], p).verdict == "no_change"


def test_policies_and_overrides():
    assert policy_for("ttft_ms.p99").observe_only
    assert policy_for("output_throughput").direction == "higher"
    assert policy_for("ttft_ms.p50", {"ttft_ms.*": 0.2}).min_effect == 0.2
    assert policy_for("tpot_ms.mean", observe_only=["tpot*"]).observe_only


def test_bonferroni_widens_intervals_with_more_metrics():
    b = [{"a": x, "b": x} for x in BASE]
    c = [{"a": x * 1.1, "b": x * 1.1} for x in BASE]
    one = compare_summaries(b, c, ["a"])[0]
    two = compare_summaries(b, c, ["a", "b"])[0]
    assert two.ci_high - two.ci_low > one.ci_high - one.ci_low
    assert two.level == pytest.approx(1 - 0.05 / 2)


def test_environment_mismatch_names_keys():
    assert environment_mismatch({"gpu": "A10G", "d": "1"}, {"gpu": "H100", "d": "1"}) == ["gpu: 'A10G' -> 'H100'"]


samples = st.lists(st.floats(50, 200), min_size=2, max_size=6)


@settings(max_examples=200, deadline=None)
@given(samples, samples)
def test_flipping_direction_swaps_regression_and_improvement(b, c):
    lo, hi = compare_metric("m", b, c, LOWER), compare_metric("m", b, c, HIGHER)
    swap = {"regression": "improvement", "improvement": "regression"}
    assert hi.verdict == swap.get(lo.verdict, lo.verdict)


@settings(max_examples=200, deadline=None)
@given(samples, samples, st.floats(1e-3, 1e3))
def test_invariant_to_units_and_scale(b, c, k):
    v1 = compare_metric("m", b, c, LOWER)
    v2 = compare_metric("m", [x * k for x in b], [x * k for x in c], LOWER)
    assert v1.verdict == v2.verdict
    assert v1.ratio == pytest.approx(v2.ratio, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(samples, samples)
def test_swapping_a_and_b_inverts_ratio_and_interval(b, c):
    ab, ba = compare_metric("m", b, c, LOWER), compare_metric("m", c, b, LOWER)
    assert ab.ratio * ba.ratio == pytest.approx(1.0)
    if ab.ci_low is not None:
        assert ab.ci_low * ba.ci_high == pytest.approx(1.0) and ab.ci_high * ba.ci_low == pytest.approx(1.0)
    swap = {"regression": "improvement", "improvement": "regression"}
    assert ba.verdict == swap.get(ab.verdict, ab.verdict)


RANK = {"improvement": 0, "no_change": 1, "inconclusive": 2, "regression": 3}


@settings(max_examples=200, deadline=None)
@given(samples, st.floats(0.0, 0.5), st.floats(0.0, 0.5))
def test_larger_slowdowns_never_look_better(b, s1, s2):
    assume(len(set(b)) > 1)
    small, large = sorted((s1, s2))
    v_small = compare_metric("m", b, [x * (1 + small) for x in b], LOWER)
    v_large = compare_metric("m", b, [x * (1 + large) for x in b], LOWER)
    assert v_large.ratio >= v_small.ratio
    # inconclusive and no_change are not ordered against each other; regression is monotone
    if v_small.verdict == "regression":
        assert v_large.verdict == "regression"
    assert RANK[v_large.verdict] >= min(RANK[v_small.verdict], 1)
