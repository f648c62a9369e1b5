"""The Welch interval and the minimum detectable effect against independent computations.

perfgate.judge.stats computes Welch's t interval and the MDE with its own array arithmetic. Here the same
quantities come from elsewhere: scipy.stats.ttest_ind(equal_var=False) and its confidence_interval() (the
Welch-Satterthwaite df, the p-value, the interval), a Welch df worked out by hand, the textbook normal
quantiles z(0.9) = 1.2816 and z(0.8) = 0.8416, and the exact power of a t-test at the reported MDE from the
noncentral t distribution (scipy.stats.nct).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from perfgate.judge.stats import MetricPolicy, _p_value, _welch, compare_metric

LOWER = MetricPolicy("lower", 0.05)
HIGHER = MetricPolicy("higher", 0.05)
NO_POINT_GATE = MetricPolicy("lower", 0.0)  # min_effect 0: the MDE is the t-gate's alone

# (baseline, current) trial values, positive: equal and unequal sizes, variances a factor ~30 apart, 2 to 12 trials.
_rng = np.random.default_rng(20260)
CASES = [
    ([100.0, 102.0, 98.0], [115.0, 113.0, 117.0]),
    ([100.0, 101.0], [99.0, 140.0, 120.0, 101.0]),
    ([10.0, 10.5, 9.7, 10.1, 10.3], [11.0, 9.0]),
    (list(_rng.lognormal(3.0, 0.02, 12)), list(_rng.lognormal(3.05, 0.2, 4))),
    (list(_rng.lognormal(5.0, 0.1, 6)), list(_rng.lognormal(4.9, 0.1, 6))),
]
ALPHAS = [0.2, 0.05, 0.2 / 5]  # the default, a common level, a Holm/Bonferroni step of five metrics


def _scipy(baseline, current, alpha, log=True):
    """scipy's Welch test of current - baseline (on logs by default): (result, interval at 1 - alpha, se)."""
    f = np.log if log else np.asarray
    r = st.ttest_ind(f(np.asarray(current)), f(np.asarray(baseline)), equal_var=False)
    ci = r.confidence_interval(confidence_level=1 - alpha)
    se = (ci.high - ci.low) / (2 * st.t.ppf(1 - alpha / 2, r.df))
    return r, ci, se


def test_welch_df_worked_by_hand():
    # s_b^2 = 1 (n 3), s_c^2 = 4 (n 3): v = 1/3 + 4/3 = 5/3, df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 50/17
    diff, se, df = _welch(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0]))
    assert float(diff) == pytest.approx(2.0, rel=1e-12)
    assert float(se) == pytest.approx(math.sqrt(5 / 3), rel=1e-12)
    assert float(df) == pytest.approx(50 / 17, rel=1e-12)


@pytest.mark.parametrize("baseline,current", CASES)
def test_welch_difference_se_df_and_p_match_scipy(baseline, current):
    r, _, se_ref = _scipy(baseline, current, 0.2)
    diff, se, df = _welch(np.log(baseline), np.log(current))
    assert float(df) == pytest.approx(r.df, rel=1e-10)  # Welch-Satterthwaite
    assert float(diff) / float(se) == pytest.approx(r.statistic, rel=1e-10)
    assert float(se) == pytest.approx(se_ref, rel=1e-10)
    assert float(_p_value(diff, se, df)) == pytest.approx(r.pvalue, rel=1e-9)


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("baseline,current", CASES)
def test_log_welch_interval_is_scipys_interval_of_the_log_difference(baseline, current, alpha):
    v = compare_metric(baseline, current, LOWER, alpha=alpha)
    _, ci, _ = _scipy(baseline, current, alpha)
    assert v.method == "log-welch" and v.level == pytest.approx(1 - alpha)
    assert v.ratio == pytest.approx(math.exp(np.mean(np.log(current)) - np.mean(np.log(baseline))), rel=1e-12)
    assert (v.ci_low, v.ci_high) == pytest.approx((math.exp(ci.low), math.exp(ci.high)), rel=1e-9)
    # the interval excludes 1 exactly when scipy's two-sided test rejects at alpha
    assert (v.ci_low > 1 or v.ci_high < 1) == (st.ttest_ind(np.log(current), np.log(baseline),
                                                            equal_var=False).pvalue < alpha)


@pytest.mark.parametrize("alpha", [0.2, 0.05])
def test_linear_welch_interval_is_scipys_difference_over_the_baseline_mean(alpha):
    baseline, current = [40.0, 44.0, 38.0, 41.0], [0.0, 35.0, 30.0]  # a zero: no logs, the linear fallback
    v = compare_metric(baseline, current, HIGHER, alpha=alpha)
    _, ci, _ = _scipy(baseline, current, alpha, log=False)
    mb = np.mean(baseline)
    assert v.method == "linear-welch"
    assert (v.ci_low, v.ci_high) == pytest.approx((1 + ci.low / mb, 1 + ci.high / mb), rel=1e-9)


def _mde_log(v):
    """The MDE on the log scale from the reported percentage (lower is better: exp(mde) - 1)."""
    return math.log1p(v.mde_pct / 100)


@pytest.mark.parametrize("baseline,current", CASES)
def test_mde_has_80_percent_power_by_the_noncentral_t(baseline, current):
    """The reported MDE, taken as the true effect, is detected (t > t(1 - alpha/2)) with the power the
    noncentral t gives. (t(1-a/2) + t(0.8))·se is the usual approximation: exact power lies a little above 80%
    at few degrees of freedom (0.82 at df 4) and tends to 80% as df grows (next test)."""
    alpha = 0.2
    v = compare_metric(baseline, current, NO_POINT_GATE, alpha=alpha)
    r, _, se = _scipy(baseline, current, alpha)
    power = st.nct.sf(st.t.ppf(1 - alpha / 2, r.df), r.df, _mde_log(v) / se)
    assert 0.80 <= power <= 0.84, (r.df, power)  # at most 0.835 (df ~1.5); the cases here have df 1.0 to 7.4


def test_mde_at_many_trials_is_the_textbook_normal_value():
    """At large df, t quantiles are the normal ones: MDE = (z(0.9) + z(0.8))·se = (1.2816 + 0.8416)·se at alpha
    0.2, 80% power (any sample-size table), and the power at it is 80%."""
    rng = np.random.default_rng(7)
    baseline, current = rng.lognormal(4.0, 0.1, 4000), rng.lognormal(4.0, 0.1, 4000)
    v = compare_metric(list(baseline), list(current), NO_POINT_GATE, alpha=0.2)
    r, _, se = _scipy(baseline, current, 0.2)
    assert _mde_log(v) == pytest.approx((1.2816 + 0.8416) * se, rel=2e-4)
    assert st.nct.sf(st.t.ppf(0.9, r.df), r.df, _mde_log(v) / se) == pytest.approx(0.80, abs=0.001)


def test_mde_where_the_point_gate_decides():
    """Small noise: the interval clears 1 long before the estimate clears min_effect, so the MDE is min_effect plus
    the 80% quantile of the estimate's noise; at that true effect the estimate (normal, sd se) exceeds
    log(1 + min_effect) with probability 80% (a little more: a t quantile is wider than the normal one)."""
    baseline, current = [100.0, 100.2, 99.9, 100.1], [100.3, 99.8, 100.0, 100.2]
    v = compare_metric(baseline, current, LOWER, alpha=0.2)
    r, _, se = _scipy(baseline, current, 0.2)
    m = math.log1p(LOWER.min_effect)
    assert m > (st.t.ppf(0.9, r.df)) * se  # this case is the point gate's
    power = st.norm.sf((m - _mde_log(v)) / se)
    assert 0.80 <= power <= st.norm.cdf(st.t.ppf(0.8, r.df)) + 1e-9


@pytest.mark.parametrize("baseline,current", CASES[:3])
def test_mde_of_a_higher_is_better_metric_is_the_mirror_on_the_log_scale(baseline, current):
    """Worse is lower: the MDE is the drop 1 - exp(-mde_log) with mde_log as for the lower-is-better metric."""
    lo = compare_metric(baseline, current, LOWER)
    hi = compare_metric(baseline, current, HIGHER)
    assert hi.mde_pct == pytest.approx(-math.expm1(-_mde_log(lo)) * 100, rel=1e-12)
    assert 0 < hi.mde_pct < lo.mde_pct


def test_a_run_against_previous_runs_must_clear_the_spread_between_boots():
    """judge.stats.beyond_run_spread: the prediction interval of a new run from k earlier runs' means,
    t = (c - mean) / (s sqrt(1 + 1/k)) with k - 1 df, checked against scipy; fewer than 3 runs cannot clear."""
    import math

    from scipy import stats

    from perfgate.judge.stats import beyond_run_spread

    runs = [[4.0, 4.1, 4.2], [6.0, 6.2, 5.9], [5.0, 5.1, 4.9]]  # three boots, their trials tight
    means = [sum(math.log(x) for x in r) / 3 for r in runs]
    sd = stats.tstd(means)
    slow = [7.6, 7.7, 7.8]  # +50% against the earlier runs' geometric mean, but boots already spread 4..6
    c = sum(math.log(x) for x in slow) / 3
    t = (c - sum(means) / 3) / (sd * math.sqrt(1 + 1 / 3))
    crit = stats.t.ppf(1 - 0.01 / 2, 2)
    clears, why = beyond_run_spread(runs, slow, "lower", 0.99)
    assert clears == bool(t > crit) and not clears and f"{t:.1f} run-to-run sds" in why and f"{crit:.1f}" in why
    tight = [[5.0, 5.1], [5.05, 5.0], [4.98, 5.02], [5.01, 5.03]]
    assert beyond_run_spread(tight, [6.0, 6.1], "lower", 0.99)[0]  # +20% against boots within 1%: a regression
    assert not beyond_run_spread(tight, [6.0, 6.1], "higher", 0.99)[0]  # higher is better: an improvement
    few, why = beyond_run_spread(runs[:2], slow, "lower", 0.99)
    assert not few and "2 earlier run(s)" in why
