"""The robust location of paired log ratios: equal to the old Newey-West mean where it should be, bounded
influence of a wild block, honest standard errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfgate.judge.robust import HUBER_K, huber_location, location, location_scalar, newey_west_lag
from perfgate.judge.sequential import _mean_se_df

finite = st.integers(-1000, 1000).map(lambda x: x / 1000)  # log ratios, on a grid (ties happen)


@settings(deadline=None, max_examples=60)
@given(st.lists(finite, min_size=2, max_size=40))
def test_the_mean_estimator_is_the_old_newey_west_mean(xs):
    d = np.array(xs)
    mu, se = location_scalar(d, "mean")
    old_mu, old_se, _ = _mean_se_df(d, np.zeros(len(d), dtype=int))
    assert mu == pytest.approx(old_mu, abs=1e-12) and se == pytest.approx(old_se, rel=1e-9, abs=1e-15)


@settings(deadline=None, max_examples=60)
@given(st.lists(finite, min_size=3, max_size=40), st.floats(-2, 2), st.floats(0.1, 10))
def test_huber_is_shift_and_scale_equivariant(xs, shift, scale):
    d = np.array(xs)
    mu, se = location_scalar(d, "huber")
    mu2, se2 = location_scalar(d * scale + shift, "huber")
    assert mu2 == pytest.approx(mu * scale + shift, abs=1e-6 * (1 + abs(shift)))
    assert se2 == pytest.approx(se * scale, rel=1e-5, abs=1e-9)


def test_a_wild_block_pulls_the_huber_estimate_by_a_bounded_amount():
    rng = np.random.default_rng(0)
    d = rng.normal(0, 0.15, 30)
    wild = d.copy()
    wild[7] = 3.0  # one block 20 sigma off: another process took the core for one window
    mean_shift = location_scalar(wild, "mean")[0] - location_scalar(d, "mean")[0]
    huber_shift = location_scalar(wild, "huber")[0] - location_scalar(d, "huber")[0]
    assert mean_shift > 0.09 and abs(huber_shift) < 0.015
    _, s, r = huber_location(wild)
    assert abs(r[7]) > HUBER_K and s == pytest.approx(0.15, rel=0.35)


def test_huber_standard_error_is_calibrated_and_nearly_as_efficient_as_the_mean():
    """Monte Carlo: the sandwich s.e. matches the estimator's spread; at the normal the variance is ~1/0.95."""
    rng = np.random.default_rng(1)
    d = rng.normal(0, 0.2, (4000, 30))
    mu_h, se_h = location(d, "huber")
    mu_m, se_m = location(d, "mean")
    assert np.mean(se_h) == pytest.approx(mu_h.std(), rel=0.12)
    assert 1.0 < mu_h.var() / mu_m.var() < 1.12
    # heavy tails (t with 3 df): Huber's estimate is the more precise one, and its s.e. still calibrated
    t3 = rng.standard_t(3, (4000, 30)) * 0.1
    mu_h, se_h = location(t3, "huber")
    mu_m, _ = location(t3, "mean")
    assert mu_h.var() < 0.8 * mu_m.var() and np.mean(se_h) == pytest.approx(mu_h.std(), rel=0.15)


def test_batch_equals_scalar_and_constant_data_is_exact():
    rng = np.random.default_rng(2)
    d = rng.normal(0, 0.1, (5, 12))
    mu, se = location(d)
    for i in range(5):
        assert (mu[i], se[i]) == pytest.approx(location_scalar(d[i]))
    assert location_scalar(np.full(6, 0.05)) == (pytest.approx(0.05), 0.0)
    with pytest.raises(ValueError):
        location(np.array([0.1]))
    with pytest.raises(ValueError):
        location(d, "median")


def test_newey_west_lag_rule():
    assert [newey_west_lag(n) for n in (2, 10, 24, 100, 200)] == [1, 2, 2, 4, 4]
