"""Change points in a case's history: E-divisive with a Student t-test and a minimum magnitude. Pure functions.

The method is the one Apache Otava (formerly Hunter) runs on nightly CI,
written here from the papers:

* **E-divisive** (Matteson & James, "A Nonparametric Approach for Multiple
  Change Point Analysis of Multivariate Data", JASA 2014, arXiv 1306.4933):
  the split tau of a segment that maximises the energy-distance divergence
  Q(tau) = m k / (m + k) * (2/(m k) sum|x_i - y_j| - C(m,2)^-1 sum|x_i - x_i'|
  - C(k,2)^-1 sum|y_j - y_j'|) (alpha = 1) is the best candidate; segments are
  bisected recursively.
* **Student's t-test instead of the permutation test** and **weak points
  merged down** (Fleming et al., "Hunter: Using Change Point Detection to Hunt
  for Performance Regressions", ICPE 2023, arXiv 2301.03034): the bisection
  keeps a split as a *weak* change point while the two-sided pooled t-test of
  its two sides has p <= 10 alpha (a relaxed first pass, so that a step next
  to another is not lost while the segment still holds both); then every
  change point is re-tested against its neighbours (the runs since the
  previous change point vs those until the next one) and the weakest failing
  one is removed, repeatedly, until all have p <= alpha; a change point whose
  relative change is below the minimum magnitude (``min_effect``) fails.

perfgate's conventions on top: the test runs on log values (a change is a
ratio; ms or s give the same answer), each metric's direction says which way
is worse, absolute-rule metrics (error_rate) stay on their own scale, and the
gate (:func:`judge_history`) applies Holm's correction over the gating
metrics, as the stored-baseline verdict does (:mod:`perfgate.judge.stats`).
The p-value of the chosen split is optimistic (the split was picked as the
best of many); ``alpha`` is therefore small, and the false-alarm rate it
gives on pure noise is measured in tests/history/test_changepoint.py and
stated in docs/statistics.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy import special as _sp

from perfgate.judge.history_run import HistoryRun
from perfgate.judge.stats import KEY_METRICS, MetricPolicy, PolicyOverride, holm_alphas, policies_for
from perfgate.schema.verdict import UNUSABLE, Direction

if TYPE_CHECKING:
    from perfgate.judge.verdict import JudgePolicy

DEFAULT_ALPHA = 0.001
"""Per-metric threshold of a change point's t-test (Otava's default p-value threshold)."""
DEFAULT_FAMILY_ALPHA = 0.01
"""The gate's family-wise level over the gating metrics (Holm)."""
MIN_SIZE = 2
"""Fewest runs on either side of a change point: one run alone is not a new level."""
LOOKBACK = 5
"""The gate reports change points that begin within this many newest runs."""


# ---------------------------------------------------------------------------
# The statistic


def divergence(x: np.ndarray) -> np.ndarray:
    """Q(tau) of Matteson & James (alpha = 1) for every split tau = 1..n-1 of ``x`` (index 0 and n: -inf)."""
    n = len(x)
    out = np.full(n + 1, -np.inf)
    if n < 2:
        return out
    d = np.abs(x[:, None] - x[None, :])
    s = np.zeros((n + 1, n + 1))
    s[1:, 1:] = d.cumsum(0).cumsum(1)  # s[a, b] = sum of d[:a, :b]
    tau = np.arange(1, n)
    m, k = tau.astype(float), (n - tau).astype(float)
    within_x = s[tau, tau]
    cross = s[tau, n] - within_x
    within_y = s[n, n] - 2 * cross - within_x
    with np.errstate(divide="ignore", invalid="ignore"):
        wx = np.where(m > 1, within_x / (m * (m - 1)), 0.0)
        wy = np.where(k > 1, within_y / (k * (k - 1)), 0.0)
        out[1:n] = m * k / (m + k) * (2 * cross / (m * k) - wx - wy)
    return out


def t_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p of Student's pooled t-test (Fleming et al. sec. 3); both sides constant: 0 if they differ."""
    na, nb = len(a), len(b)
    if na < 1 or nb < 1 or na + nb < 3:
        return 1.0
    diff = float(b.mean() - a.mean())
    ss = float(((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum())
    df = na + nb - 2
    if ss <= 0 or ss <= 1e-24 * max(diff * diff, 1e-300):
        return 0.0 if diff != 0 else 1.0
    se = math.sqrt(ss / df * (1 / na + 1 / nb))
    return float(2 * _sp.stdtr(df, -abs(diff) / se))  # the t distribution's tail, without scipy.stats' overhead


@dataclass(frozen=True)
class Split:
    """A change point on the analysis scale: ``index`` is the first value of the new level."""

    index: int
    p: float
    diff: float  # mean after - mean before (log values for ratio metrics)


def _tests(x: np.ndarray, cps: list[int]) -> list[Split]:
    bounds = [0, *cps, len(x)]
    return [Split(c, t_test(x[bounds[i]:c], x[c:bounds[i + 2]]), float(x[c:bounds[i + 2]].mean()
                                                                       - x[bounds[i]:c].mean()))
            for i, c in enumerate(cps)]


def split_points(x: Sequence[float], *, alpha: float = DEFAULT_ALPHA, min_magnitude: float = 0.0,
                 min_size: int = MIN_SIZE, first_pass: float = 10.0) -> list[Split]:
    """Change points of ``x`` (already on the analysis scale): bisection by E-divisive, splits kept while the t-test
    of the two sides has p <= ``first_pass`` x alpha, then weak points merged until every one passes against its
    neighbours with p <= alpha and |diff| >= ``min_magnitude``."""
    x = np.asarray(x, dtype=float)
    relaxed = min(alpha * first_pass, 0.5)
    min_size = max(int(min_size), 1)
    cps: list[int] = []
    stack = [(0, len(x))]
    while stack:
        a, b = stack.pop()
        if b - a < 2 * min_size or np.ptp(x[a:b]) == 0:
            continue
        q = divergence(x[a:b])
        q[:min_size] = -np.inf
        q[b - a - min_size + 1:] = -np.inf
        tau = int(np.argmax(q))
        if not math.isfinite(q[tau]) or t_test(x[a:a + tau], x[a + tau:b]) > relaxed:
            continue
        cps.append(a + tau)
        stack += [(a, a + tau), (a + tau, b)]
    cps.sort()
    while cps:
        tests = _tests(x, cps)
        weak = [s for s in tests if s.p > alpha or abs(s.diff) < min_magnitude]
        if not weak:
            return tests
        cps.remove(max(weak, key=lambda s: (s.p, -abs(s.diff))).index)
    return []


# ---------------------------------------------------------------------------
# Change points of a series


ENV_LABELS: dict[str, str] = {
    "engine_version": "engine", "engine_spec": "engine spec", "engine_flags": "engine flags", "git_commit": "commit",
    "perfgate_version": "perfgate", "gpu_driver": "GPU driver", "driver": "driver", "cuda_driver": "CUDA driver",
    "torch": "torch", "torch_cuda": "torch CUDA", "flashinfer": "flashinfer", "model_revision": "model revision",
    "model_path": "model path", "python": "python",
}
_SHORT = {"git_commit": 10, "model_revision": 10}


def environment_changes(before: Mapping[str, str | None], after: Mapping[str, str | None]) -> tuple[str, ...]:
    """``("engine 0.31.0 → 0.32.0", "commit 1a2b3c4d5e → 9f8e7d6c5b")``: what differs between two runs' environments
    (a spec that changed only with the version is not repeated)."""
    out = []
    for k in [*ENV_LABELS, *sorted((set(before) | set(after)) - set(ENV_LABELS))]:
        b, a = before.get(k), after.get(k)
        if b == a or (k == "engine_spec" and before.get("engine_version") != after.get("engine_version")):
            continue
        cut = _SHORT.get(k)
        show = [str(v)[:cut] if v is not None and cut else ("?" if v is None else str(v)) for v in (b, a)]
        out.append(f"{ENV_LABELS.get(k, k)} {show[0]} → {show[1]}")
    return tuple(out)


@dataclass(frozen=True)
class ChangePoint:
    """A step in one metric's history, beginning at run ``run_id`` (position ``index`` in the runs given)."""

    metric: str
    index: int
    run_id: int | None
    started_at: str
    previous_run_id: int | None  # the last run before it (the range it began in: previous -> this)
    runs_before: int  # runs in the level before (since the previous change point or reset)
    runs_after: int
    before_median: float
    after_median: float
    ratio: float | None  # geometric mean after / before (None for absolute-rule metrics)
    ci_low: float | None
    ci_high: float | None
    level: float
    p: float
    direction: Direction
    min_effect: float
    observe_only: bool
    worse: bool  # worsens the metric by more than min_effect
    changes: tuple[str, ...] = ()

    @property
    def change_pct(self) -> float | None:
        return None if self.ratio is None else (self.ratio - 1) * 100

    def one_line(self) -> str:
        """``itl_per_token_ms.p50 +12.4% [+8, +17] since run 14 (2026-12-01, engine 0.31.0 → 0.32.0)``."""
        if self.ratio is not None and self.ci_low is not None and self.ci_high is not None:
            what = (f"{self.change_pct:+.1f}% [{(self.ci_low - 1) * 100:+.0f}, {(self.ci_high - 1) * 100:+.0f}]")
        else:
            what = f"{self.before_median:.4g} → {self.after_median:.4g}"
        run = f"run {self.run_id}" if self.run_id is not None else f"run #{self.index}"
        why = ", ".join(self.changes) or "no recorded change"
        return f"{self.metric} {what} since {run} ({self.started_at[:10]}, {why})"


def _interval(left: np.ndarray, right: np.ndarray, level: float) -> tuple[float, float]:
    """Pooled-t interval of mean(right) - mean(left), the test's own (log scale for ratio metrics)."""
    na, nb = len(left), len(right)
    diff = float(right.mean() - left.mean())
    df = na + nb - 2
    if df < 1:
        return diff, diff
    ss = float(((left - left.mean()) ** 2).sum() + ((right - right.mean()) ** 2).sum())
    half = float(_sp.stdtrit(df, 0.5 + level / 2)) * math.sqrt(ss / df * (1 / na + 1 / nb))
    return diff - half, diff + half


def _start(runs: Sequence[HistoryRun], metric: str, resets: Mapping[str | None, int]) -> int:
    """Where judging of ``metric`` starts: the later of its (or the all-metrics) reset and the last hardware change."""
    ids = {r.run_id: i for i, r in enumerate(runs)}
    start = max([ids[r] for k, r in resets.items() if k in (None, metric) and r in ids] or [0])
    for i in range(len(runs) - 1, start, -1):
        if runs[i].environment.get("hardware") != runs[i - 1].environment.get("hardware"):
            return i
    return start


def _usable(runs: Sequence[HistoryRun], metric: str, start: int, policy: MetricPolicy) -> list[int]:
    """Positions of the runs judged for ``metric``: usable status, a finite value, and for a ratio metric a
    positive one (a throughput of 0 is a run that served nothing, not a level)."""
    return [i for i in range(start, len(runs)) if runs[i].status not in UNUSABLE
            and (v := runs[i].values.get(metric)) is not None and math.isfinite(v) and (policy.absolute or v > 0)]


def metric_change_points(runs: Sequence[HistoryRun], metric: str, policy: MetricPolicy, *,
                         alpha: float = DEFAULT_ALPHA, min_size: int = MIN_SIZE,
                         resets: Mapping[str | None, int] | None = None) -> list[ChangePoint]:
    """Change points of one metric over ``runs`` (oldest -> newest; unusable runs and missing values skipped)."""
    start = _start(runs, metric, resets or {})
    pos = _usable(runs, metric, start, policy)
    raw = np.array([runs[i].values[metric] for i in pos], dtype=float)
    if len(raw) < 2 * min_size:
        return []
    log = not policy.absolute
    x = np.log(raw) if log else raw
    magnitude = math.log1p(policy.min_effect) if log else policy.min_effect
    splits = split_points(x, alpha=alpha, min_magnitude=magnitude, min_size=min_size)
    bounds = [0, *[s.index for s in splits], len(x)]
    sign = 1.0 if policy.direction == "lower" else -1.0
    out = []
    for i, s in enumerate(splits):
        left, right = x[bounds[i]:s.index], x[s.index:bounds[i + 2]]
        lo, hi = _interval(left, right, 1 - alpha)
        here, prev = runs[pos[s.index]], runs[pos[s.index - 1]]
        out.append(ChangePoint(
            metric=metric, index=pos[s.index], run_id=here.run_id, started_at=here.started_at,
            previous_run_id=prev.run_id, runs_before=len(left), runs_after=len(right),
            before_median=float(np.median(raw[bounds[i]:s.index])),
            after_median=float(np.median(raw[s.index:bounds[i + 2]])),
            ratio=math.exp(s.diff) if log else None, ci_low=math.exp(lo) if log else None,
            ci_high=math.exp(hi) if log else None, level=1 - alpha, p=s.p, direction=policy.direction,
            min_effect=policy.min_effect, observe_only=policy.observe_only,
            worse=sign * s.diff > magnitude,
            changes=environment_changes(prev.environment, here.environment)))
    return out


@dataclass(frozen=True)
class HistoryPolicy:
    """How history is judged: the metrics and their policies (as for baselines), and the change point test."""

    metrics: tuple[str, ...] = KEY_METRICS
    min_effect: Mapping[str, PolicyOverride] = field(default_factory=dict)
    observe_only: tuple[str, ...] = ()
    alpha: float = DEFAULT_ALPHA
    family_alpha: float = DEFAULT_FAMILY_ALPHA
    min_size: int = MIN_SIZE
    lookback: int = LOOKBACK

    def policies(self) -> dict[str, MetricPolicy]:
        return policies_for(self.metrics, self.min_effect, self.observe_only)

    @classmethod
    def like(cls, judge_policy: JudgePolicy, **change: object) -> HistoryPolicy:
        """The history policy of a case judged with ``judge_policy`` (its metrics, min_effect overrides and
        observe-only patterns); ``change`` sets the change point fields (alpha, lookback, ...)."""
        return cls(metrics=tuple(judge_policy.metrics), min_effect=dict(judge_policy.min_effect),
                   observe_only=tuple(judge_policy.observe_only), **change)


def change_points(runs: Sequence[HistoryRun], policy: HistoryPolicy = HistoryPolicy(),
                  resets: Mapping[str | None, int] | None = None) -> list[ChangePoint]:
    """Every change point of every metric since its reset, in series order (for the report and ``history show``)."""
    found = [cp for m, pol in policy.policies().items()
             for cp in metric_change_points(runs, m, pol, alpha=policy.alpha, min_size=policy.min_size,
                                            resets=resets)]
    return sorted(found, key=lambda c: (c.index, c.metric))


def judge_history(runs: Sequence[HistoryRun], policy: HistoryPolicy = HistoryPolicy(),
                  resets: Mapping[str | None, int] | None = None) -> list[ChangePoint]:
    """The gate: new regressions of ``runs``' newest run against its own history.

    Per gating metric, the change point that begins the newest level; it is a
    regression when it begins within the ``lookback`` newest runs, worsens the
    metric by more than its ``min_effect``, and survives Holm's step-down at
    ``family_alpha`` over the gating metrics (a metric without a change point
    is in the family with p = 1). Accepted resets are respected: judging of a
    metric starts at its latest reset. The returned change points carry the
    Holm level and its interval.
    """
    gating = {m: p for m, p in policy.policies().items() if not p.observe_only}
    last: dict[str, tuple[ChangePoint, np.ndarray, np.ndarray]] = {}
    tested = []
    for m, pol in gating.items():
        cps = metric_change_points(runs, m, pol, alpha=policy.alpha, min_size=policy.min_size, resets=resets)
        if len(_usable(runs, m, _start(runs, m, resets or {}), pol)) >= 2 * policy.min_size:
            tested.append(m)
        if cps:
            last[m] = (cps[-1], *_sides(runs, m, cps, resets or {}, pol))
    if not tested:
        return []
    p = np.array([last[m][0].p if m in last else 1.0 for m in tested])
    alphas = dict(zip(tested, holm_alphas(p, policy.family_alpha)))
    out = []
    for m, (cp, left, right) in last.items():
        a = float(alphas[m])
        if cp.worse and cp.index >= len(runs) - policy.lookback and cp.p <= a:
            if cp.ratio is not None:
                lo, hi = _interval(left, right, 1 - a)
                cp = replace(cp, ci_low=math.exp(lo), ci_high=math.exp(hi), level=1 - a)
            out.append(replace(cp, level=1 - a))
    return sorted(out, key=lambda c: (c.index, c.metric))


def _sides(runs: Sequence[HistoryRun], metric: str, cps: list[ChangePoint], resets: Mapping[str | None, int],
           policy: MetricPolicy) -> tuple[np.ndarray, np.ndarray]:
    """The values (logs for a ratio metric) of the level before the last change point and of the level it begins."""
    xs = [(i, runs[i].values[metric]) for i in _usable(runs, metric, _start(runs, metric, resets), policy)]
    prev = cps[-2].index if len(cps) > 1 else -1
    left = np.array([v for i, v in xs if prev <= i < cps[-1].index])
    right = np.array([v for i, v in xs if i >= cps[-1].index])
    return (left, right) if policy.absolute else (np.log(left), np.log(right))
