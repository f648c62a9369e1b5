"""perfgate's pytest hooks (perfgate.hookspecs) and its refusal under pytest-xdist, as a user meets them:
a project's conftest.py implements the hooks and ``pytest perf`` runs in a subprocess against the sim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from perfgate.plugin import _result_hooks
from perfgate.schema.result import EngineInfo, Environment, Hardware, Result, Summary, Workload

MATRIX = """
scenarios_dir: scenarios
engines:
  sim: {kind: sim, boot_timeout_s: 30, flags: [--ttft-base-ms, "20", --itl-ms, "10"]}  # slow enough for a busy box
models:
  sim-model: {path: sim-model}
runs:
  - {hardware: cpu, engines: [sim], models: [sim-model], scenarios: [gate]}
"""
SCENARIO = "name: gate\nnum_requests: 4\nprompt_tokens: 4\nmax_tokens: 4\nconcurrency: 1\ntrials: 1\n"
CONFTEST = '''
import os


def pytest_perfgate_update_machine_info(config, result, machine_info):
    machine_info["power_profile"] = os.environ["TEST_POWER_PROFILE"]


def pytest_perfgate_extra_metrics(config, result):
    return {"meter.joules": 2.5 * result.summary.completed}
'''


def _pytest(project: Path, *args: str, profile: str = "performance") -> subprocess.CompletedProcess:
    env = {**os.environ, "PERFGATE_MACHINE": "hook-box", "TEST_POWER_PROFILE": profile}
    return subprocess.run([sys.executable, "-m", "pytest", "perf", "-q", "-p", "no:cacheprovider", *args],
                          cwd=project, capture_output=True, text=True, env=env, timeout=300)


def test_conftest_hooks_add_machine_info_and_metrics_that_a_stored_comparison_checks(tmp_path, perf_project):
    project = perf_project(tmp_path, MATRIX, {"gate": SCENARIO})
    (project / "perf" / "conftest.py").write_text(CONFTEST)
    up = _pytest(project, "--perf-update-baselines")
    assert up.returncode == 0, up.stdout[-3000:]
    result = json.loads(next((project / "reports" / "results").glob("*.result.json")).read_text())
    assert result["environment"]["machine_info"] == {"power_profile": "performance"}
    assert result["summary"]["metrics"]["meter.joules"] == 10.0  # 4 requests completed
    baseline = json.loads(next((project / "baselines").rglob("gate.json")).read_text())
    assert json.loads(baseline["fingerprint"]["machine_info"]) == {"power_profile": "performance"}
    assert all(t["meter.joules"] == 10.0 for t in baseline["trials"])

    same = _pytest(project)
    # compared (one trial against the baseline's two may decide nothing: inconclusive, counted apart)
    assert same.returncode == 0 and "0 NOT COMPARED" in same.stdout, same.stdout[-3000:]
    assert "1 compared" in same.stdout or "1 inconclusive" in same.stdout, same.stdout[-3000:]
    other = _pytest(project, profile="powersave")  # the machine changed the way the hook reports
    assert other.returncode == 0, other.stdout[-3000:]
    assert "NOT COMPARED" in other.stdout and "0 compared" in other.stdout
    assert "machine_info" in other.stdout and "powersave" in other.stdout


def _result(**metrics: float) -> Result:
    env = Environment(engine=EngineInfo(name="sim"), model="m", hardware=Hardware(accelerator="cpu"),
                      perfgate_version="0", python="3.11", hostname="h", started_at="t")
    return Result(test_id="t", scenario="s", environment=env, summary=Summary(completed=1, failed=0, duration_s=1,
                                                                               metrics=dict(metrics)),
                  workload=Workload(scenario="s", num_requests=1, prompt_tokens=4, max_tokens=4, concurrency=1))


def _config(adds: dict, *extras: dict | None) -> SimpleNamespace:
    """A config whose hook relay answers as registered implementations would (pluggy: a list of returns)."""

    def update_machine_info(config, result, machine_info):
        machine_info.update(adds)

    return SimpleNamespace(hook=SimpleNamespace(pytest_perfgate_update_machine_info=update_machine_info,
                                                pytest_perfgate_extra_metrics=lambda config, result: list(extras)))


def test_an_extra_metric_may_not_replace_a_measured_one():
    result = _result(**{"ttft_ms.p50": 20.0})
    with pytest.raises(ValueError, match="'ttft_ms.p50' is a metric perfgate measured"):
        _result_hooks(_config({}, {"ttft_ms.p50": 1.0}))(result)
    _result_hooks(_config({}, None, {"meter.w": 3}))(result)  # an implementation may return None
    assert result.summary.metrics == {"ttft_ms.p50": 20.0, "meter.w": 3.0}


def test_machine_info_must_be_scalars_a_fingerprint_can_compare():
    with pytest.raises(ValueError, match="must be str, int, float, bool or None.*'disks'"):
        _result_hooks(_config({"disks": ["nvme0"]}))(_result())


def test_xdist_is_refused_in_one_line_before_any_worker_starts(tmp_path, perf_project):
    pytest.importorskip("xdist")  # a dev dependency (pyproject.toml); the refusal needs it to be reachable
    project = perf_project(tmp_path, MATRIX, {"gate": SCENARIO})
    proc = _pytest(project, "-n", "2")
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "perfgate:" in ln]
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(lines) == 1 and "pytest-xdist (-n/--dist) is not supported" in lines[0]
    assert "clear the shared results directory" in lines[0]
    assert not (project / "reports").exists()  # nothing booted, nothing written
    assert _pytest(project, "-n", "0", "--collect-only").returncode == 0  # -n 0: no workers, no refusal
