"""Group-sequential boundaries against published tables and scipy's multivariate normal."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from perfgate.judge.groupseq import (
    boundaries_for_looks,
    constant_shape_boundary,
    crossing_probabilities,
    nominal_levels,
    obf_spending,
    pocock_spending,
    power_spending,
    spending_boundaries,
)

# Lan-DeMets O'Brien-Fleming-type spending, one-sided alpha = 0.025, K equally spaced looks: the upper Z
# boundaries printed by the R packages ldbounds (bounds(t, iuse=1, alpha=0.025)) and gsDesign
# (gsDesign(k=K, test.type=1, sfu=sfLDOF)$upper$bound), to 4 decimals.
LDOF_0025 = {
    2: [2.9626, 1.9686],
    3: [3.7103, 2.5114, 1.9930],
    4: [4.3326, 2.9631, 2.3590, 2.0141],
    5: [4.8769, 3.3569, 2.6803, 2.2898, 2.0310],
}
# Jennison & Turnbull 2000, Table 2.1 (Pocock C_P(K, 0.05)) and Table 2.3 (O'Brien-Fleming C_B(K, 0.05)),
# two-sided alpha = 0.05, K equally spaced looks.
POCOCK_005 = {2: 2.178, 3: 2.289, 4: 2.361, 5: 2.413}
OBF_005 = {2: 1.977, 3: 2.004, 4: 2.024, 5: 2.040}


@pytest.mark.parametrize("K", sorted(LDOF_0025))
def test_lan_demets_obf_matches_published_boundaries(K):
    t = np.arange(1, K + 1) / K
    # to the tables' 4-decimal rounding (and their grids)
    assert spending_boundaries(t, 0.025, "obf") == pytest.approx(LDOF_0025[K], abs=1.5e-4)


@pytest.mark.parametrize("K", sorted(POCOCK_005))
def test_pocock_and_obrien_fleming_constants_match_jennison_turnbull(K):
    assert constant_shape_boundary(K, 0.05, "pocock", two_sided=True) == pytest.approx(POCOCK_005[K], abs=6e-4)
    assert constant_shape_boundary(K, 0.05, "obf", two_sided=True) == pytest.approx(OBF_005[K], abs=6e-4)


def test_the_first_look_is_a_plain_normal_quantile():
    t = np.array([0.3, 0.7, 1.0])
    c = spending_boundaries(t, 0.01, "obf")
    assert c[0] == pytest.approx(stats.norm.isf(obf_spending(0.3, 0.01)), rel=1e-8)


def test_spending_functions_end_at_alpha_and_rise():
    t = np.linspace(0.01, 1, 50)
    for f in (obf_spending, pocock_spending, power_spending(2.0)):
        a = f(t, 0.01)
        assert f(1.0, 0.01) == pytest.approx(0.01) and np.all(np.diff(a) > 0) and f(0.0, 0.01) == 0.0
    assert obf_spending(0.25, 0.01) < 1e-5 < pocock_spending(0.25, 0.01)  # OBF saves alpha for late looks


def _mvn_no_crossing(c, t, theta=0.0):
    """P(Z_k < c_k for all k) from scipy's multivariate normal with Cov(Z_j, Z_k) = sqrt(t_j / t_k)."""
    t = np.asarray(t)
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    return stats.multivariate_normal(mean=theta * np.sqrt(t), cov=cov, abseps=1e-7, releps=1e-7).cdf(np.asarray(c))


@pytest.mark.parametrize("theta", [0.0, 1.5, 3.0])
def test_recursive_integration_agrees_with_scipy_multivariate_normal(theta):
    t = [0.2, 0.45, 0.8, 1.0]  # unequal spacing
    c = [3.1, 2.6, 2.2, 2.05]
    up, lo = crossing_probabilities(c, t, theta=theta)
    assert lo.sum() == 0.0
    assert 1 - up.sum() == pytest.approx(_mvn_no_crossing(c, t, theta), abs=2e-5)
    # and the partial sums: crossing by look 2 only involves the first two looks
    assert 1 - up[:2].sum() == pytest.approx(_mvn_no_crossing(c[:2], t[:2], theta), abs=2e-5)


@settings(deadline=None, max_examples=25)
@given(st.lists(st.floats(0.05, 0.95), min_size=1, max_size=5, unique=True), st.sampled_from([0.001, 0.01, 0.05]),
       st.sampled_from(["obf", "pocock"]))
def test_boundaries_spend_exactly_alpha_at_each_look(ts, alpha, shape):
    t = np.array(sorted(ts) + [1.0])
    t = t[np.concatenate([[True], np.diff(t) > 0.02])]
    c = spending_boundaries(t, alpha, shape)
    up, _ = crossing_probabilities(c, t)
    f = obf_spending if shape == "obf" else pocock_spending
    np.testing.assert_allclose(np.cumsum(up), f(t, alpha), atol=1e-7, rtol=1e-4)
    assert up.sum() == pytest.approx(alpha, rel=1e-4)


def test_an_unplanned_last_look_spends_all_that_is_left():
    looks, N = [6, 12, 15], 24  # the budget ended the comparison at 15 blocks, between planned looks 12 and 18
    planned = boundaries_for_looks(looks, N, 0.01)
    final = boundaries_for_looks(looks, N, 0.01, last_spends_all=True)
    assert final[:2] == pytest.approx(planned[:2]) and final[2] < planned[2]
    up, _ = crossing_probabilities(final, np.array(looks) / N)
    assert up.sum() == pytest.approx(0.01, rel=1e-4)


def test_nominal_levels_and_power():
    assert nominal_levels([stats.norm.isf(0.01)]) == pytest.approx([0.01])
    c = spending_boundaries([0.5, 1.0], 0.025)
    # the fixed-sample test's power at drift z_0.975 + z_0.9 is 90%; two OBF looks lose almost nothing of it
    up, _ = crossing_probabilities(c, [0.5, 1.0], theta=stats.norm.isf(0.025) + stats.norm.isf(0.1))
    assert 0.895 < up.sum() < 0.9
    assert math.isinf(spending_boundaries([0.5, 1.0], 0.01, power_spending(1.0), cumulative=[0.0, 0.01])[0])


def test_bad_information_fractions_are_refused():
    with pytest.raises(ValueError):
        spending_boundaries([0.5, 0.4], 0.01)
    with pytest.raises(ValueError):
        spending_boundaries([0.5, 1.0], 1.5)
