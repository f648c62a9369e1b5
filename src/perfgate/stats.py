"""Statistics on per-trial summaries: pure functions, no I/O (asv style).

A verdict compares N baseline trials with M current trials of one metric. The
unit of evidence is the trial (requests within a trial share engine state and
are not independent). Method (docs/statistics.md):

* work on log values, so a change is a ratio and the result does not depend
  on units or scale;
* Welch's t interval for the difference of log means → a confidence interval
  of the ratio current/baseline;
* Bonferroni: with k metrics judged at once, each interval is at level 1 − α/k;
* two gates — a **regression** needs the interval to exclude 1 (statistically
  clear) *and* the point estimate to be worse by more than the metric's minimum
  effect (large enough to matter); **no_change** needs the whole interval
  inside ± minimum effect; anything else is **inconclusive**, reported with the
  minimum detectable effect for this noise and trial count.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import stats as _st

Direction = Literal["lower", "higher"]
Verdict = Literal["regression", "improvement", "no_change", "inconclusive", "no_baseline"]


@dataclass(frozen=True)
class MetricPolicy:
    direction: Direction
    min_effect: float = 0.05  # relative change that matters (0.05 = 5%)
    observe_only: bool = False  # reported, never fails a test


# First match wins. Tails and extremes are observe-only by default: with 3
# trials of a few dozen requests, a p99 is one or two requests.
DEFAULT_POLICIES: tuple[tuple[str, MetricPolicy], ...] = (
    ("*.std", MetricPolicy("lower", 0.5, observe_only=True)),
    ("*.min", MetricPolicy("lower", 0.1, observe_only=True)),
    ("*.max", MetricPolicy("lower", 0.1, observe_only=True)),
    ("*.p99", MetricPolicy("lower", 0.1, observe_only=True)),
    ("*.p95", MetricPolicy("lower", 0.1, observe_only=True)),
    ("per_user_tps.*", MetricPolicy("higher", 0.05)),
    ("*_throughput", MetricPolicy("higher", 0.05)),
    ("goodput", MetricPolicy("higher", 0.05)),
    ("error_rate", MetricPolicy("lower", 0.0)),  # handled by its own rule
    ("ttft_ms.*", MetricPolicy("lower", 0.05)),
    ("itl_ms.*", MetricPolicy("lower", 0.05)),
    ("itl_per_token_ms.*", MetricPolicy("lower", 0.05)),
    ("tpot_ms.*", MetricPolicy("lower", 0.05)),
    ("e2e_ms.*", MetricPolicy("lower", 0.05)),
    ("cost_*", MetricPolicy("lower", 0.05, observe_only=True)),
    ("gpu*.memory_used_mib.*", MetricPolicy("lower", 0.05, observe_only=True)),
    ("gpu*.power_w.*", MetricPolicy("lower", 0.05, observe_only=True)),
    ("*", MetricPolicy("lower", 0.05, observe_only=True)),
)

# The metrics a verdict is about by default (the rest can be judged on request).
KEY_METRICS = (
    "ttft_ms.p50", "ttft_ms.mean", "itl_ms.p50", "tpot_ms.mean", "e2e_ms.p50",
    "output_throughput", "request_throughput", "error_rate", "ttft_ms.p99", "e2e_ms.p99",
)


def policy_for(metric: str, overrides: Mapping[str, float] | None = None,
               observe_only: Sequence[str] = ()) -> MetricPolicy:
    """The policy of ``metric``; ``overrides`` maps patterns to a min_effect."""
    base = next(p for pat, p in DEFAULT_POLICIES if fnmatch.fnmatch(metric, pat))
    for pat, eff in (overrides or {}).items():
        if fnmatch.fnmatch(metric, pat):
            base = replace(base, min_effect=eff)
    if any(fnmatch.fnmatch(metric, pat) for pat in observe_only):
        base = replace(base, observe_only=True)
    return base


@dataclass(frozen=True)
class MetricVerdict:
    metric: str
    verdict: Verdict
    ratio: float | None  # current / baseline (geometric means)
    ci_low: float | None
    ci_high: float | None
    mde_pct: float | None  # smallest change detectable with ~80% power here
    n_baseline: int
    n_current: int
    direction: Direction
    observe_only: bool
    baseline_median: float | None = None
    current_median: float | None = None
    level: float | None = None  # confidence level of the interval (after correction)

    @property
    def change_pct(self) -> float | None:
        return None if self.ratio is None else (self.ratio - 1.0) * 100.0

    def one_line(self, context: str) -> str:
        """e.g. ``ttft_ms.p50 +12.3% [+8.1%, +16.5%] vs vllm 0.32.0 / tiny-llama / cpu``."""
        if self.ratio is None:
            return f"{self.metric} {self.verdict} vs {context}"
        pct = lambda r: f"{(r - 1) * 100:+.1f}%"  # noqa: E731
        return f"{self.metric} {pct(self.ratio)} [{pct(self.ci_low)}, {pct(self.ci_high)}] vs {context}"


def _clean(xs: Sequence[float | None]) -> np.ndarray:
    return np.array([x for x in xs if x is not None and math.isfinite(x)], dtype=float)


def compare_metric(
    metric: str,
    baseline: Sequence[float | None],
    current: Sequence[float | None],
    policy: MetricPolicy,
    alpha: float = 0.05,
) -> MetricVerdict:
    """Judge one metric; ``alpha`` is already corrected for multiplicity."""
    b, c = _clean(baseline), _clean(current)
    common = dict(metric=metric, n_baseline=len(b), n_current=len(c), direction=policy.direction,
                  observe_only=policy.observe_only,
                  baseline_median=float(np.median(b)) if len(b) else None,
                  current_median=float(np.median(c)) if len(c) else None, level=1 - alpha)
    if len(b) == 0:
        return MetricVerdict(verdict="no_baseline", ratio=None, ci_low=None, ci_high=None, mde_pct=None, **common)
    if len(c) == 0:
        return MetricVerdict(verdict="inconclusive", ratio=None, ci_low=None, ci_high=None, mde_pct=None, **common)
    if metric == "error_rate" or np.any(b <= 0) or np.any(c <= 0):
        return _compare_absolute(b, c, policy, common)
    lb, lc = np.log(b), np.log(c)
    diff = lc.mean() - lb.mean()
    ratio = math.exp(diff)
    if len(b) < 2 or len(c) < 2:  # no variance estimate on one side: cannot be clear
        return MetricVerdict(verdict="inconclusive", ratio=ratio, ci_low=None, ci_high=None, mde_pct=None, **common)
    vb, vc = lb.var(ddof=1) / len(b), lc.var(ddof=1) / len(c)
    se = math.sqrt(vb + vc)
    if se == 0.0:  # deterministic metric: the interval is the point
        lo = hi = ratio
        mde = 0.0
    else:
        df = (vb + vc) ** 2 / ((vb**2 / (len(b) - 1)) + (vc**2 / (len(c) - 1)))
        t = _st.t.ppf(1 - alpha / 2, df)
        lo, hi = math.exp(diff - t * se), math.exp(diff + t * se)
        mde = (math.exp((t + _st.t.ppf(0.8, df)) * se) - 1) * 100.0
    # Express everything as "badness": > 1 is worse, whatever the direction.
    worse = (lambda r: r) if policy.direction == "lower" else (lambda r: 1.0 / r)
    bad_pt, bad_lo, bad_hi = worse(ratio), min(worse(lo), worse(hi)), max(worse(lo), worse(hi))
    me = 1.0 + policy.min_effect
    if bad_lo > 1.0 and bad_pt > me:
        verdict: Verdict = "regression"
    elif bad_hi < 1.0 and bad_pt < 1.0 / me:
        verdict = "improvement"
    elif bad_hi <= me and bad_lo >= 1.0 / me:
        verdict = "no_change"
    else:
        verdict = "inconclusive"
    return MetricVerdict(verdict=verdict, ratio=ratio, ci_low=lo, ci_high=hi, mde_pct=mde, **common)


def _compare_absolute(b: np.ndarray, c: np.ndarray, policy: MetricPolicy, common: dict) -> MetricVerdict:
    """Rates that can be zero (errors): judged on the absolute difference of means.

    With ``min_effect`` 0 (error_rate's default) any increase is a regression:
    baselines are only written from error-free runs.
    """
    mb, mc = float(b.mean()), float(c.mean())
    worse = (mc - mb) if policy.direction == "lower" else (mb - mc)
    if worse > policy.min_effect:
        verdict: Verdict = "regression"
    elif worse < -policy.min_effect:
        verdict = "improvement"
    else:
        verdict = "no_change"
    return MetricVerdict(verdict=verdict, ratio=(mc / mb) if mb else None, ci_low=None, ci_high=None,
                         mde_pct=None, **common)


def compare_summaries(
    baseline: Sequence[Mapping[str, float | None]],
    current: Sequence[Mapping[str, float | None]],
    metrics: Sequence[str] = KEY_METRICS,
    min_effect: Mapping[str, float] | None = None,
    observe_only: Sequence[str] = (),
    alpha: float = 0.05,
) -> list[MetricVerdict]:
    """Judge ``metrics`` across trials; Bonferroni over the metrics that can fail."""
    policies = {m: policy_for(m, min_effect, observe_only) for m in metrics}
    gating = [m for m in metrics if not policies[m].observe_only] or list(metrics)
    corrected = alpha / len(gating)
    out = []
    for m in metrics:
        b = [t.get(m) for t in baseline]
        c = [t.get(m) for t in current]
        if not _clean(b).size and not _clean(c).size:
            continue  # metric absent on both sides (e.g. GPU figures on CPU)
        out.append(compare_metric(m, b, c, policies[m], corrected))
    return out


def environment_mismatch(base: Mapping[str, object], current: Mapping[str, object],
                         ignore: Sequence[str] = ()) -> list[str]:
    """Fingerprint keys whose values differ (comparing across them is not like for like)."""
    keys = sorted(set(base) | set(current))
    return [f"{k}: {base.get(k)!r} -> {current.get(k)!r}" for k in keys
            if k not in ignore and base.get(k) != current.get(k)]
