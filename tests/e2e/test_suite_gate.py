"""The whole gate, as a user runs it: `pytest perf` in a project, against the reference engine.

A temporary project with a matrix (engine: perfgate sim), a scenario and an
empty baseline store is driven by real `pytest` subprocesses:
1. --perf-update-baselines writes the baseline;
2. the same engine passes against it;
3. a 25% injected slowdown (PERFGATE_SIM_INJECT_SLOWDOWN, invisible to the
   fingerprint like an engine regression) fails with the one-line reason;
4. the same baseline seen from another machine is NOT COMPARED: it passes and
   says so, and fails under --perf-strict;
5. a corrupt baseline fails with an error naming the file.
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
num_requests: 12
prompt_tokens: 16
max_tokens: 24
concurrency: 2
warmup_requests: 2
trials: 3
"""


@pytest.fixture
def project(tmp_path, perf_project):
    return perf_project(tmp_path, MATRIX, {"gate": SCENARIO})


def _pytest(project: Path, *args: str, slowdown: float = 1.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PERFGATE_SIM_INJECT_SLOWDOWN": str(slowdown), "PERFGATE_MACHINE": "e2e-box"}
    return subprocess.run([sys.executable, "-m", "pytest", "perf", "-m", "cpu", "-q", "-p", "no:cacheprovider", *args],
                          cwd=project, capture_output=True, text=True, env=env, timeout=300)


def test_update_pass_regress_corrupt(project):
    up = _pytest(project, "--perf-update-baselines")
    assert up.returncode == 0, up.stdout[-3000:]
    base = project / "baselines" / "e2e-box" / "sim-sim-1" / "sim-model" / "gate.json"
    assert base.exists() and "baseline written" in up.stdout
    assert json.loads(base.read_text())["boots"] == 2  # boot-to-boot variance is in the baseline

    same = _pytest(project)
    assert same.returncode == 0, same.stdout[-3000:]
    assert "1 compared (0 regressed), 0 inconclusive, 0 NOT COMPARED" in same.stdout  # exit 0 because it compared, not skipped

    other = _pytest(project, "--perf-machine", "fresh-box")  # a machine with no baseline at all: its first run
    assert other.returncode == 0, other.stdout[-3000:]
    assert "NOT COMPARED" in other.stdout and "first run on machine 'fresh-box'" in other.stdout
    assert "'e2e-box'" in other.stdout and "0 compared" in other.stdout  # where baselines are, named
    first_strict = _pytest(project, "--perf-machine", "fresh-box", "--perf-strict", slowdown=1.25)
    assert first_strict.returncode == 0, first_strict.stdout[-3000:]  # a first run is not red, even strict
    assert "first run on machine 'fresh-box'" in first_strict.stdout and "(0 regressed)" in first_strict.stdout
    assert "REGRESSION" not in first_strict.stdout  # the 25% slowdown has nothing to be compared with
    # a machine that has baselines, asked for a version it has none of: strict fails it, never a regression
    strict = _pytest(project, "--perf-baseline-version", "9.9.9", "--perf-strict", slowdown=1.25)
    assert strict.returncode == 1 and "NOT COMPARED under --perf-strict" in strict.stdout, strict.stdout[-3000:]
    assert "regress" not in strict.stdout.split("NOT COMPARED under")[0].lower()  # never called a regression

    slow = _pytest(project, slowdown=1.25)
    assert slow.returncode == 1, slow.stdout[-3000:]
    line = next(ln for ln in slow.stdout.splitlines() if "ttft_ms.p50 +" in ln)
    assert "vs sim sim-1 / sim-model / cpu @ e2e-box" in line
    assert "confirmation run on a fresh boot" in slow.stdout  # confirmed before failing
    verdicts = json.loads((project / "reports" / "verdicts.json").read_text())
    assert verdicts["cases"][0]["status"] == "regression"
    report = (project / "reports" / "index.html").read_text()  # rendered at session end
    assert 'data-status="regression"' in report
    assert "REGRESSION" in (project / "reports" / "summary.md").read_text()

    base.write_text("{ not json")
    bad = _pytest(project)
    assert bad.returncode == 1
    assert f"{base}: not a readable baseline" in bad.stdout


LIVE_MATRIX = """
scenarios_dir: scenarios
engines:
  sim-a:
    kind: sim
    flags: [--ttft-base-ms, "40", --itl-ms, "4", --jitter-ms, "0.3", --seed, "1", --drift-per-min, "0.5"]
    boot_timeout_s: 30
  sim-b-slower:
    kind: sim
    flags: [--ttft-base-ms, "48", --itl-ms, "4.8", --jitter-ms, "0.3", --seed, "1", --drift-per-min, "0.5"]
    boot_timeout_s: 30
models:
  sim-model: {path: sim-model}
runs:
  - hardware: cpu
    engines: [sim-a, sim-b-slower]
    models: [sim-model]
    scenarios: [gate]
"""


def test_live_ab_sees_a_20pct_slowdown_through_drift_and_passes_a_a(project):
    """--perf-compare-to: both engines booted in one session, blocks alternating; the machine drifts
    +50%/min (both sides), B is 20% slower. B vs A fails with the regression; A vs A (booted twice) passes."""
    (project / "perf" / "matrix.yaml").write_text(LIVE_MATRIX)
    slow = _pytest(project, "--perf-engine", "sim-b-slower", "--perf-compare-to", "sim-a", "--perf-machine", "x")
    assert slow.returncode == 1, slow.stdout[-3000:]
    assert "live A/B vs sim-a" in slow.stdout and "paired blocks" in slow.stdout
    # the failure line leads with the scenario's primary metric (e2e p50 for a scenario of no named family)
    line = next(ln for ln in slow.stdout.splitlines() if "vs sim-a (sim-1) live / sim-model / x" in ln)
    assert line.startswith("e2e_ms.p50 +"), line
    verdicts = json.loads((project / "reports" / "verdicts.json").read_text())
    case = verdicts["cases"][0]
    assert case["status"] == "regression" and case["baseline"]["live_engine"] == "sim-a"
    assert case["outcome"] == "regression" and case["live"]["primary_metric"] == "e2e_ms.p50"
    ratios = {v["metric"]: v["ratio"] for v in case["verdicts"]}
    assert all(1.12 < ratios[m] < 1.30 for m in ("ttft_ms.gmean", "ttft_ms.p50", "e2e_ms.p50"))  # +20%, drift cancelled
    assert len(case["live"]["blocks"]) <= 24  # within the default plan's block budget

    same = _pytest(project, "--perf-engine", "sim-a", "--perf-compare-to", "sim-a")
    assert same.returncode == 0, same.stdout[-3000:]
    case = json.loads((project / "reports" / "verdicts.json").read_text())["cases"][0]
    assert case["status"] == "ok" and case["verdicts"]  # compared, not skipped
    assert case["outcome"] == "no_change"  # decided, not inconclusive
    assert not any(v["verdict"] == "regression" for v in case["verdicts"])


MODEL_MATRIX = """
scenarios_dir: scenarios
engines:
  sim:
    kind: sim
    flags: [--ttft-base-ms, "40", --itl-ms, "4", --jitter-ms, "0.3", --seed, "1", --drift-per-min, "0.5"]
    boot_timeout_s: 30
models:
  sim-model: {path: sim-model}
  # a "bigger model" on the same engine: its arguments make the sim 20% slower (later flags win)
  sim-model-big: {path: sim-model-big, engine_args: [--ttft-base-ms, "48", --itl-ms, "4.8"]}
runs:
  - hardware: cpu
    engines: [sim]
    models: [sim-model, sim-model-big]
    scenarios: [gate]
"""


def test_live_ab_of_a_model_change_on_one_engine(project):
    """--perf-compare-model: side A is the same engine serving the reference model, both booted at once.
    The reference model's own case is not run (it would be A/A) unless --perf-model names it."""
    (project / "perf" / "matrix.yaml").write_text(MODEL_MATRIX)
    slow = _pytest(project, "--perf-compare-model", "sim-model", "--perf-machine", "x")
    assert slow.returncode == 1, slow.stdout[-3000:]
    assert "1 failed" in slow.stdout and "live A/B vs sim" in slow.stdout
    line = next(ln for ln in slow.stdout.splitlines() if "vs sim (sim-1) live / sim-model / x" in ln)
    assert line.startswith("e2e_ms.p50 +"), line
    cases = json.loads((project / "reports" / "verdicts.json").read_text())["cases"]
    # the candidate and its reference side; no A/A case of the reference model
    assert [c["case_id"] for c in cases] == ["sim-sim-model-big-gate", "sim-sim-model-gate.reference"]
    case = cases[0]
    assert case["status"] == "regression" and case["outcome"] == "regression"
    ratios = {v["metric"]: v["ratio"] for v in case["verdicts"]}
    assert all(1.12 < ratios[m] < 1.30 for m in ("ttft_ms.gmean", "e2e_ms.p50"))
    reference = json.loads(next((project / "reports" / "results").glob("*.reference.trial0.result.json")).read_text())
    assert reference["environment"]["model"] == "sim-model"
