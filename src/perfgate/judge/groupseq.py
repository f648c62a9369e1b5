"""Group-sequential boundaries: alpha-spending functions and the exact joint law of the looks.

Pure functions, no I/O. A comparison is judged at K planned looks with
information fractions ``0 < t_1 < ... < t_K = 1`` (here: blocks so far over
the planned maximum). Under the canonical joint distribution (Jennison &
Turnbull 2000, *Group Sequential Methods with Applications to Clinical
Trials*, §3.1) the standardized statistics Z_k are multivariate normal with
``E[Z_k] = theta sqrt(t_k)`` and ``Cov(Z_j, Z_k) = sqrt(t_j / t_k)`` (j <= k);
equivalently the score ``S_k = Z_k sqrt(t_k)`` has independent normal
increments. One-sided upper boundaries ``c_k`` are chosen so that the
probability of first crossing at look k under H0 is what the spending function
allots to it (Lan & DeMets 1983):

    P(Z_1 < c_1, ..., Z_{k-1} < c_{k-1}, Z_k >= c_k) = alpha(t_k) - alpha(t_{k-1}).

The crossing probabilities are computed by recursive numerical integration
of the score's density over the continuation region (Armitage, McPherson &
Rowe 1969, J. R. Stat. Soc. A 132:235; Jennison & Turnbull 2000 ch. 19),
with Simpson's rule on a grid of each look's continuation interval. They
agree with scipy's multivariate normal CDF (tests/unit/test_groupseq.py) and
with the published tables (Pocock and O'Brien-Fleming constants, Jennison &
Turnbull Table 2.1/2.3; Lan-DeMets O'Brien-Fleming-type boundaries as
printed by the R packages ldbounds / gsDesign).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from scipy import optimize as _opt
from scipy import stats as _st

Spending = Callable[[np.ndarray | float, float], np.ndarray | float]

GRID = 201
"""Simpson nodes per look's continuation interval (odd). 201 gives boundaries to ~1e-5 (tests)."""
_TAIL = 9.0  # the continuation region's open end, in standard deviations of S_k under the drift


def obf_spending(t: np.ndarray | float, alpha: float) -> np.ndarray | float:
    """Lan-DeMets O'Brien-Fleming-type spending, one-sided: alpha(t) = 2 - 2 Phi(z_{1-alpha/2} / sqrt(t)).

    Lan & DeMets 1983, "Discrete sequential boundaries for clinical trials",
    Biometrika 70:659, eq. (7), written for a one-sided level alpha as in
    gsDesign's ``sfLDOF`` (Anderson, gsDesign manual) and Jennison & Turnbull
    2000 §7.2. Spends almost nothing early (t = 0.25 of alpha = 0.01: 2e-6),
    so the last look keeps nearly the fixed-sample critical value.
    """
    t = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    z = _st.norm.isf(alpha / 2)
    with np.errstate(divide="ignore"):
        out = np.where(t > 0, 2.0 * _st.norm.sf(z / np.sqrt(np.where(t > 0, t, 1.0))), 0.0)
    return float(out) if out.ndim == 0 else out


def pocock_spending(t: np.ndarray | float, alpha: float) -> np.ndarray | float:
    """Lan-DeMets Pocock-type spending: alpha(t) = alpha log(1 + (e - 1) t) (Lan & DeMets 1983, eq. (8))."""
    t = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    out = alpha * np.log1p((math.e - 1.0) * t)
    return float(out) if out.ndim == 0 else out


def power_spending(rho: float) -> Spending:
    """Kim-DeMets power family alpha(t) = alpha t^rho (Kim & DeMets 1987, Biometrika 74:149)."""

    def f(t: np.ndarray | float, alpha: float) -> np.ndarray | float:
        t = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
        out = alpha * t**rho
        return float(out) if out.ndim == 0 else out

    return f


SPENDING: dict[str, Spending] = {"obf": obf_spending, "pocock": pocock_spending}


def _simpson(lo: float, hi: float, n: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and composite Simpson weights on [lo, hi] (n odd)."""
    x = np.linspace(lo, hi, n)
    w = np.ones(n)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return x, w * (hi - lo) / (3.0 * (n - 1))


def _check_t(t: Sequence[float]) -> np.ndarray:
    t = np.asarray(t, dtype=float)
    if t.ndim != 1 or len(t) == 0 or np.any(t <= 0) or np.any(np.diff(t) <= 0):
        raise ValueError(f"information fractions must be positive and increasing, got {list(t)}")
    return t


class _Recursion:
    """The sub-density of S_k on the continuation region, look by look (Jennison & Turnbull 2000 §19.2).

    ``g`` holds f_k(s) * Simpson weight at the nodes ``x`` of look k's
    continuation interval, so that sums over ``g`` are integrals.
    """

    def __init__(self, theta: float, n: int):
        self.theta, self.n = theta, n
        self.x: np.ndarray | None = None
        self.g: np.ndarray | None = None
        self.t_prev = 0.0

    def _moments(self, t: float) -> tuple[np.ndarray, float]:
        d = t - self.t_prev
        mean = (self.x if self.x is not None else np.zeros(1)) + self.theta * d
        return mean, math.sqrt(d)

    def _weights(self) -> np.ndarray:
        return self.g if self.g is not None else np.ones(1)

    def upper(self, t: float, c: float) -> float:
        """P(continued through the previous looks and Z_k >= c) at information t."""
        mean, sd = self._moments(t)
        return float(self._weights() @ _st.norm.sf((c * math.sqrt(t) - mean) / sd))

    def lower(self, t: float, a: float) -> float:
        """P(continued through the previous looks and Z_k <= a)."""
        if a == -math.inf:
            return 0.0
        mean, sd = self._moments(t)
        return float(self._weights() @ _st.norm.cdf((a * math.sqrt(t) - mean) / sd))

    def advance(self, t: float, a: float, c: float) -> None:
        """Move to look k with continuation region a < Z_k < c (a may be -inf)."""
        mean_t, sd_t = self.theta * t, math.sqrt(t)
        lo = a * sd_t if a > -math.inf else mean_t - _TAIL * sd_t
        hi = c * sd_t if c < math.inf else mean_t + _TAIL * sd_t
        mean, sd = self._moments(t)
        x, w = _simpson(lo, max(hi, lo + 1e-12), self.n)
        dens = _st.norm.pdf((x[:, None] - mean[None, :]) / sd) / sd  # (new nodes, old nodes)
        self.g = w * (dens @ self._weights())
        self.x, self.t_prev = x, t


def crossing_probabilities(upper: Sequence[float], t: Sequence[float], theta: float = 0.0,
                           lower: Sequence[float] | None = None, n: int = GRID) -> tuple[np.ndarray, np.ndarray]:
    """P(first exit at look k through the upper / lower boundary), k = 1..K.

    ``upper``/``lower`` are boundaries on the Z scale (lower default -inf: a
    one-sided test); ``theta`` the drift, E[Z_k] = theta sqrt(t_k). The sum of
    the upper ones under theta = 0 is the test's size, under theta != 0 its
    power. Recursive numerical integration (Armitage, McPherson & Rowe 1969;
    Jennison & Turnbull 2000 ch. 19).
    """
    t = _check_t(t)
    up = np.asarray(upper, dtype=float)
    lo = np.full(len(t), -np.inf) if lower is None else np.asarray(lower, dtype=float)
    if len(up) != len(t) or len(lo) != len(t):
        raise ValueError("one boundary per look")
    rec = _Recursion(theta, n)
    p_up, p_lo = np.zeros(len(t)), np.zeros(len(t))
    for k, tk in enumerate(t):
        p_up[k] = rec.upper(tk, up[k])
        p_lo[k] = rec.lower(tk, lo[k])
        if k < len(t) - 1:
            rec.advance(tk, lo[k], up[k])
    return p_up, p_lo


def spending_boundaries(t: Sequence[float], alpha: float, spending: str | Spending = "obf",
                        cumulative: Sequence[float] | None = None, n: int = GRID) -> np.ndarray:
    """One-sided upper boundaries c_k (Z scale) that spend ``alpha`` by ``spending`` over the looks ``t``.

    Look k's boundary solves P(no earlier crossing, Z_k >= c_k) = alpha(t_k) -
    alpha(t_{k-1}) (Lan & DeMets 1983) under H0, the left side by recursive
    integration (Jennison & Turnbull 2000 §19.2). ``cumulative`` overrides the
    spent totals look by look (e.g. spend all that is left at an unplanned
    last look: Lan-DeMets' flexibility, valid when the timing of looks does
    not depend on the data). A look allotted nothing gets +inf (it cannot
    reject). ``t_K`` < 1 is allowed (the plan ends early).
    """
    t = _check_t(t)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    f = SPENDING[spending] if isinstance(spending, str) else spending
    cum = np.asarray(f(t, alpha) if cumulative is None else cumulative, dtype=float)
    cum = np.maximum.accumulate(np.clip(cum, 0.0, alpha))
    inc = np.diff(cum, prepend=0.0)
    rec = _Recursion(0.0, n)
    out = np.empty(len(t))
    for k, tk in enumerate(t):
        if inc[k] <= 1e-15:
            out[k] = np.inf
        else:
            cont = rec.upper(tk, -40.0)  # probability of having continued this far
            target = min(inc[k], cont * (1 - 1e-12))
            g = lambda c: rec.upper(tk, c) - target  # noqa: E731 - decreasing in c
            hi = float(_st.norm.isf(target)) + 0.5  # the one-look boundary is an upper bound of c_k ... plus slack
            lo_b = -10.0
            out[k] = _opt.brentq(g, lo_b, max(hi, lo_b + 1), xtol=1e-10)
        if k < len(t) - 1:
            rec.advance(tk, -math.inf, out[k])
    return out


@lru_cache(maxsize=512)
def _cached(t: tuple[float, ...], alpha: float, spending: str, last_spends_all: bool) -> tuple[float, ...]:
    arr = np.array(t)
    cum = SPENDING[spending](arr, alpha)
    if last_spends_all:
        cum = np.asarray(cum, dtype=float).copy()
        cum[-1] = alpha
    return tuple(spending_boundaries(arr, alpha, spending, cumulative=cum))


def boundaries_for_looks(looks: Sequence[int], max_blocks: int, alpha: float, spending: str = "obf",
                         last_spends_all: bool = False) -> np.ndarray:
    """Upper Z boundaries of the looks made so far (blocks ``looks``; information n / max_blocks), cached.

    ``last_spends_all``: the last of ``looks`` is the comparison's final one
    (the budget ended it before ``max_blocks``): it spends what is left of
    ``alpha`` (Lan & DeMets 1983; Jennison & Turnbull 2000 §7.2.2).
    """
    t = tuple(min(1.0, n / max_blocks) for n in looks)
    return np.array(_cached(t, float(alpha), spending, bool(last_spends_all)))


def nominal_levels(boundaries: Sequence[float]) -> np.ndarray:
    """One-sided nominal significance level of each Z boundary, 1 - Phi(c_k).

    With an estimated variance the look statistic is a t, not a Z: testing
    each look's t statistic at the nominal level of its Z boundary (its
    t_{df} quantile) is the "significance level approach" of Jennison &
    Turnbull 2000 §11.4 (after Pocock 1977), which keeps the size close to
    alpha for the degrees of freedom used here.
    """
    return _st.norm.sf(np.asarray(boundaries, dtype=float))


def constant_shape_boundary(K: int, alpha: float, shape: str, two_sided: bool = False, n: int = GRID) -> float:
    """The constant C of Pocock (c_k = C) or O'Brien-Fleming (c_k = C sqrt(K/k)) boundaries, K equal looks.

    Pocock 1977 (Biometrika 64:191); O'Brien & Fleming 1979 (Biometrics
    35:549); tabulated in Jennison & Turnbull 2000 Tables 2.1 (Pocock) and
    2.3 (O'Brien-Fleming) for two-sided tests. ``two_sided`` uses the
    symmetric boundaries +-c_k with total size ``alpha``.
    """
    t = np.arange(1, K + 1) / K
    shape_v = np.ones(K) if shape == "pocock" else np.sqrt(K / np.arange(1, K + 1))

    def size(c: float) -> float:
        up, lo = crossing_probabilities(c * shape_v, t, lower=-c * shape_v if two_sided else None, n=n)
        return float(up.sum() + lo.sum()) - alpha

    return float(_opt.brentq(size, 1.0, 6.0, xtol=1e-10))


__all__ = ["GRID", "SPENDING", "boundaries_for_looks", "constant_shape_boundary", "crossing_probabilities",
           "nominal_levels", "obf_spending", "pocock_spending", "power_spending", "spending_boundaries"]
