"""Trends over a case's history: one chart per key metric, change points marked, the current run highlighted.

For the report (the integrator calls :func:`case_trends` with a series from
the history store) and for the terminal / ``summary.md`` (:func:`summary_lines`:
one line per new change point). Each chart plots one value per run (the
median of its ok trials) against the run's place in the series, draws every
level between change points at its median (the before/after medians), marks
where each change begins (red when it is a regression the gate reports, grey
otherwise) with what changed there, and rings the current run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from perfgate.judge.changepoint import ChangePoint, HistoryPolicy, change_points, judge_history
from perfgate.judge.history_run import HistoryRun
from perfgate.report.charts import _render

TREND_METRICS: tuple[str, ...] = ("ttft_ms.p50", "itl_per_token_ms.p50", "e2e_ms.p50", "output_throughput")
"""The gating ratio metrics (error_rate is a count of failures, shown in the verdict, not as a trend)."""


@dataclass
class Trend:
    metric: str
    svg: str | None
    change_points: list[ChangePoint] = field(default_factory=list)
    regressions: list[ChangePoint] = field(default_factory=list)  # new, gating: what the gate reports


def _levels(n: int, cps: Sequence[ChangePoint]) -> list[tuple[int, int]]:
    bounds = [0, *[c.index for c in cps], n]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def trend_svg(runs: Sequence[HistoryRun], metric: str, cps: Sequence[ChangePoint] = (),
              regressions: Sequence[ChangePoint] = (), current_run_id: int | None = None) -> str | None:
    """The chart of ``metric`` over ``runs`` (oldest -> newest) as inline SVG; None when no run has the metric."""
    pts = [(i, r.values[metric]) for i, r in enumerate(runs)
           if metric in r.values and math.isfinite(r.values[metric])]
    if not pts:
        return None
    red = {c.index for c in regressions}

    def draw(ax) -> None:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=2.5, linewidth=0.8, color="C0",
                label=metric)
        for k, (a, b) in enumerate(_levels(len(runs), [c for c in cps if c.metric == metric])):
            vals = sorted(v for i, v in pts if a <= i < b)
            if vals:
                med = vals[len(vals) // 2] if len(vals) % 2 else (vals[len(vals) // 2 - 1] + vals[len(vals) // 2]) / 2
                ax.hlines(med, a - 0.4, b - 0.6, colors="C1", linewidth=1.6,
                          label="median of each level" if k == 0 else None)
        for c in cps:
            if c.metric != metric:
                continue
            bad = c.index in red
            ax.axvline(c.index - 0.5, color="C3" if bad else "0.55", linestyle="--", linewidth=1.0)
            label = f"{c.change_pct:+.1f}%" if c.change_pct is not None else ""
            if c.changes:
                label += f" {c.changes[0]}"
            ax.annotate(label.strip(), (c.index - 0.5, 1.0), xycoords=("data", "axes fraction"), fontsize=6,
                        rotation=90, va="top", ha="right", color="C3" if bad else "0.35")
        cur = next((i for i, r in enumerate(runs) if r.run_id == current_run_id), None)
        if cur is not None and metric in runs[cur].values:
            ax.scatter([cur], [runs[cur].values[metric]], s=40, facecolors="none", edgecolors="C3", linewidths=1.4,
                       zorder=4, label="this run")
        step = max(1, len(runs) // 8)
        ticks = list(range(0, len(runs), step))
        ax.set_xticks(ticks, [runs[i].started_at[5:10] for i in ticks], fontsize=7)
        ax.set_xlabel("run (date)")
        ax.set_ylabel(metric)
        ax.legend(loc="lower left")

    return _render(2.6, draw)


def case_trends(runs: Sequence[HistoryRun], policy: HistoryPolicy = HistoryPolicy(),
                resets: Mapping[str | None, int] | None = None, current_run_id: int | None = None,
                metrics: Sequence[str] = TREND_METRICS) -> list[Trend]:
    """A trend per key metric of one case's series, with its change points and the gate's regressions."""
    cps = change_points(runs, policy, resets)
    new = judge_history(runs, policy, resets)
    out = []
    for m in metrics:
        mine = [c for c in cps if c.metric == m]
        bad = [c for c in new if c.metric == m]
        out.append(Trend(m, trend_svg(runs, m, mine, bad, current_run_id), mine, bad))
    return out


def summary_lines(regressions: Sequence[ChangePoint]) -> list[str]:
    """One line per new change point, for the terminal and summary.md."""
    return [c.one_line() for c in regressions]


def open_change_points(trends: Sequence[Trend]) -> list[dict[str, object]]:
    """The open change points of a case as table rows (metric, run, date, change, interval, what changed)."""
    rows = []
    for t in trends:
        for c in t.change_points:
            rows.append({"metric": c.metric, "run": c.run_id, "date": c.started_at[:10],
                         "change": None if c.change_pct is None else round(c.change_pct, 1),
                         "interval": None if c.ci_low is None else (round((c.ci_low - 1) * 100, 1),
                                                                    round((c.ci_high - 1) * 100, 1)),
                         "before": c.before_median, "after": c.after_median, "changes": "; ".join(c.changes),
                         "regression": any(r.index == c.index for r in t.regressions)})
    return rows
