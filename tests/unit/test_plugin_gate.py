"""The gate's failure reaches pytest as one line: the session imports no pytest, so ``outcome.check()`` raises
``CaseFailed`` and the plugin turns it into a one-line test failure (no traceback). A case whose model path
does not exist fails before any engine boots, so this runs the real plugin in-process in well under a second."""

from __future__ import annotations

import pytest

MATRIX = """
scenarios_dir: scenarios
engines:
  sim: {kind: sim}
models:
  gone: {path: ./no-such-model-dir}
runs:
  - {hardware: cpu, engines: [sim], models: [gone], scenarios: [s]}
"""


def test_a_failed_case_is_one_line_without_a_traceback(tmp_path, perf_project, monkeypatch, capsys):
    perf_project(tmp_path, MATRIX, {"s": "name: s\nnum_requests: 1\nprompt_tokens: 4\nmax_tokens: 4\nconcurrency: 1\n"})
    monkeypatch.chdir(tmp_path)
    rc = pytest.main(["perf", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
                      "--import-mode=importlib",  # another in-process run may have imported its own test_serving
                      "--perf-cache", str(tmp_path / "cache"), "--perf-results", str(tmp_path / "reports")])
    out = capsys.readouterr().out
    assert rc == 1, out
    line = "sim-gone-s: model 'gone': path ./no-such-model-dir does not exist"
    lines = out.splitlines()
    header = next(i for i, ln in enumerate(lines) if "_ test_serving[sim-gone-s] _" in ln)
    assert lines[header + 1] == line, out  # the failure is that line, right under the test's header
    assert "FAILED perf/test_serving.py::test_serving[sim-gone-s] - Failed: sim-gone-s: " in out
    assert "Traceback" not in out and "CaseFailed" not in out and "def test_serving" not in out, out
    assert "FAILED        sim-gone-s" in out  # the perfgate summary section, from the same outcome
    assert not (tmp_path / "cache").exists()  # nothing installed or booted
