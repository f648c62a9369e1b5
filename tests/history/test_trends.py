"""Trend charts (perfgate.report.trends): change points marked, levels at their medians, the current run ringed."""

from __future__ import annotations

from test_changepoint import POLICY, series

from perfgate.report.trends import case_trends, open_change_points, summary_lines, trend_svg


def test_a_trend_marks_the_regression_its_levels_and_this_run() -> None:
    runs = series(16, step=0.12, at=12, env_at={"at": 12, "env": {"engine_version": "0.32.0"}})
    trends = {t.metric: t for t in case_trends(runs, POLICY, current_run_id=runs[-1].run_id)}
    itl = trends["itl_per_token_ms.p50"]
    assert [c.index for c in itl.regressions] == [12] and itl.svg.startswith("<svg")
    for text in ("this run", "median of each level", "engine 0.31.0 → 0.32.0", "+1"):
        assert text in itl.svg, text
    [line] = summary_lines(itl.regressions)
    assert line.startswith("itl_per_token_ms.p50 +1") and "since run 112" in line
    rows = open_change_points(trends.values())
    assert len(rows) == 4 and all(r["regression"] and r["run"] == 112 for r in rows)


def test_a_quiet_history_has_no_marks_and_a_missing_metric_no_chart() -> None:
    runs = series(10)
    svg = trend_svg(runs, "ttft_ms.p50")
    assert svg and "this run" not in svg and "median of each level" in svg
    assert trend_svg(runs, "gpu_power_w.mean") is None
