"""The session's history pieces that need no engine: which store, which previous runs a case is compared with,
how the comparison is named, and a store that cannot be used (the e2e test runs the whole gate on the sim)."""

from __future__ import annotations

from perfgate.judge.history_run import HistoryRun
from perfgate.report.render import render_report
from perfgate.session.history import SessionHistory, _describe, history_url, reference_runs


def _run(i: int, status: str = "ok", version: str = "0.32.0", day: int = 1) -> HistoryRun:
    return HistoryRun(run_id=i, started_at=f"2026-12-{day:02d}T02:00:00+00:00", values={"ttft_ms.p50": 10.0},
                      environment={"engine_version": version}, status=status)


def test_the_store_is_the_option_else_the_environment_else_the_cache_and_off_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PERFGATE_CACHE", str(tmp_path))  # the cache is found in the process's environment
    env: dict[str, str] = {}
    assert history_url(None, env) == f"sqlite:///{tmp_path / 'history.sqlite'}"
    assert history_url(None, {**env, "PERFGATE_HISTORY": str(tmp_path / "h.db")}) == f"sqlite:///{tmp_path / 'h.db'}"
    assert history_url("postgresql://u@db/h", {**env, "PERFGATE_HISTORY": "off"}) == "postgresql+psycopg://u@db/h"
    for off in ("off", "OFF", "none", " no "):
        assert history_url(off, env) is None
        assert history_url(None, {**env, "PERFGATE_HISTORY": off}) is None


def test_the_reference_is_the_newest_usable_runs_and_never_a_regression_unless_accepted():
    runs = [_run(1), _run(2, "failed"), _run(3), _run(4), _run(5, "regression"), _run(6, "client_bound")]
    assert [r.run_id for r in reference_runs(runs, {})] == [1, 3, 4]  # 2, 6 unusable; 5 a regression
    assert [r.run_id for r in reference_runs(runs, {}, n=1)] == [4]
    # accepted from run 5 on (perfgate history accept 5): the new normal is a yardstick
    assert [r.run_id for r in reference_runs(runs, {None: 5})] == [3, 4, 5]
    # a reset of one metric is not a reset of the comparison
    assert [r.run_id for r in reference_runs(runs, {"ttft_ms.p50": 5})] == [1, 3, 4]
    assert reference_runs([_run(1, "failed")], {}) == []


def test_the_comparison_names_its_runs_dates_and_engine_versions():
    assert _describe([_run(1)]) == "history: run 1 (2026-12-01, engine 0.32.0)"
    assert _describe([_run(3, day=1), _run(4, day=2), _run(5, version="0.31.0", day=3)]) == \
        "history: runs 3-5 (2026-12-01..2026-12-03, engine 0.31.0, 0.32.0)"
    assert _describe([_run(1), _run(3), _run(4)]) == "history: runs 1, 3, 4 (2026-12-01, engine 0.32.0)"


def test_a_store_that_cannot_be_opened_is_one_line_and_history_json_says_so(tmp_path):
    (tmp_path / "a-file").write_text("")
    h = SessionHistory(f"sqlite:///{tmp_path / 'a-file' / 'h.sqlite'}")
    assert h.store() is None and h.store() is None  # opened (tried) once
    [line] = h.summary_lines()
    assert line.startswith("history: history store sqlite:///") and "a-file" in line and "\n" not in line
    out = tmp_path / "out"
    out.mkdir()
    h.write(out)
    html, md = render_report([out], out)  # a results directory with no result files still renders
    assert "### history: new change points" in md.read_text() and "a-file" in md.read_text()


def test_history_off_writes_no_history_json_and_a_bad_one_is_listed_unreadable(tmp_path):
    (tmp_path / "history.json").write_text("{}")
    assert SessionHistory(None).write(tmp_path) is None and not (tmp_path / "history.json").exists()
    (tmp_path / "history.json").write_text("{ not json")
    html, _ = render_report([tmp_path], tmp_path)
    assert "not a readable history.json" in html.read_text()


def test_a_regression_against_previous_runs_must_clear_the_spread_between_them():
    """session.history._within_run_spread: with one earlier run (one boot) the between-boot variance is unknown,
    so a trial-level regression is inconclusive and says why; against tight earlier boots it stands."""
    from perfgate.schema.verdict import Judgement, MetricVerdict
    from perfgate.session.history import _within_run_spread

    v = MetricVerdict(metric="itl_per_token_ms.p50", verdict="regression", direction="lower", ratio=1.72,
                      change_pct=72.0, level=0.99, n_baseline=3, n_current=3)
    j = Judgement(status="regression", verdicts=[v], context="history")
    current = [{"itl_per_token_ms.p50": x} for x in (7.6, 7.7, 7.8)]
    one = _within_run_spread(j, [[{"itl_per_token_ms.p50": x} for x in (4.1, 4.2, 4.2)]], current)
    assert one.status == "ok" and one.verdicts[0].verdict == "inconclusive"
    assert one.notes == ["not beyond the spread between previous runs, so inconclusive: itl_per_token_ms.p50 "
                         "+72.0% (1 earlier run(s): the variance between engine boots is unknown below 3, so a "
                         "run-level regression cannot be told from a slow boot)"]
    tight = [[{"itl_per_token_ms.p50": x} for x in run] for run in ((4.4, 4.5), (4.45, 4.4), (4.42, 4.46))]
    assert _within_run_spread(j, tight, current).status == "regression"
