"""The gate on history, as a user runs it: `pytest perf` sessions on the sim, one history store between them.

1. A fresh, unnamed machine: the first session's case is NOT COMPARED ("first run of this series ... recorded,
   nothing to compare"); the second is compared with the first ("history: run 1 ...").
2. A planted +25% slowdown (PERFGATE_SIM_INJECT_SLOWDOWN, invisible to the fingerprint like an engine
   regression) from run 5 of 6: the history names run 5 as where it began, and the report draws the trend.
3. An unreachable store: one line naming it (password redacted), the results and verdicts still written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sim_project import MATRIX

SCENARIO = """
name: gate
num_requests: 8
prompt_tokens: 16
max_tokens: 16
concurrency: 2
warmup_requests: 1
trials: 2
"""
CASE = "sim-sim-model-gate"


@pytest.fixture
def project(tmp_path, perf_project):
    return perf_project(tmp_path / "p", MATRIX, {"gate": SCENARIO})


def _pytest(project: Path, store: str, *args: str, slowdown: float = 1.0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PERFGATE_MACHINE"}  # unnamed: a newcomer's machine
    env.update(PERFGATE_SIM_INJECT_SLOWDOWN=str(slowdown), PERFGATE_HISTORY=store)
    return subprocess.run([sys.executable, "-m", "pytest", "perf", "-m", "cpu", "-q", "-p", "no:cacheprovider", *args],
                          cwd=project, capture_output=True, text=True, env=env, timeout=300)


def _case(project: Path) -> dict:
    return json.loads((project / "reports" / "verdicts.json").read_text())["cases"][0]


def test_second_run_is_compared_with_the_first_and_a_slowdown_is_dated(project, tmp_path):
    store = f"sqlite:///{tmp_path / 'history.sqlite'}"
    first = _pytest(project, store)
    assert first.returncode == 0, first.stdout[-3000:]
    assert "first run of this series on machine" in first.stdout and "recorded, nothing to compare" in first.stdout
    assert "0 compared (0 regressed), 0 inconclusive, 1 NOT COMPARED" in first.stdout
    assert _case(project)["status"] == "not_comparable"  # an unnamed machine, no history yet

    second = _pytest(project, store)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "1 compared (0 regressed), 0 inconclusive, 0 NOT COMPARED" in second.stdout
    assert "judged on history: run 1 (" in second.stdout
    case = _case(project)
    assert case["status"] == "ok" and case["verdicts"] and "series #1 run(s) 1" in case["baseline"]["path"]

    for _ in range(2):  # runs 3 and 4: the same engine
        assert _pytest(project, store).returncode == 0
    slow = _pytest(project, store, slowdown=1.25)  # run 5: slower than runs 2-4, confirmed on a fresh boot
    assert slow.returncode == 1, slow.stdout[-3000:]
    assert "confirmation run on a fresh boot" in slow.stdout and "vs history: runs 2-4 (" in slow.stdout
    again = _pytest(project, store, slowdown=1.25)  # run 6: two runs of the new level, the change point is dated
    assert again.returncode == 1, again.stdout[-3000:]
    line = next(ln for ln in again.stdout.splitlines() if ln.startswith(f"history: {CASE}: ttft_ms.p50 +"))
    assert "since run 5 (" in line, line
    case = _case(project)
    assert case["status"] == "regression"
    assert {v["method"] for v in case["verdicts"]} == {"change-point"}
    assert "since run 5" in case["reason"]
    history = json.loads((project / "reports" / "history.json").read_text())
    assert [r["run_id"] for r in history["cases"][0]["runs"]] == [1, 2, 3, 4, 5, 6]
    assert history["cases"][0]["runs"][4]["status"] == "regression"
    report = (project / "reports" / "index.html").read_text()
    assert 'data-chart="trend"' in report and 'data-testid="change-points"' in report
    summary = (project / "reports" / "summary.md").read_text()
    assert "since run 5" in summary


def test_an_unreachable_store_is_one_line_and_the_results_are_written(project):
    down = _pytest(project, "postgresql://perf:s3cret@127.0.0.1:1/history")
    assert down.returncode == 0, down.stdout[-3000:]
    lines = [ln for ln in down.stdout.splitlines() if ln.startswith("history: history store")]
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0] and "s3cret" not in down.stdout, down.stdout[-3000:]
    assert "results are written as usual" in lines[0]
    assert _case(project)["status"] == "not_comparable"  # judged as without a history: compared nothing, says so
    assert list((project / "reports" / "results").glob("*.result.json"))
    assert json.loads((project / "reports" / "history.json").read_text())["error"].startswith("history store")
