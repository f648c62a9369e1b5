"""Stopping a run: Ctrl-C (SIGINT) or SIGTERM mid-run, and the files a complete run leaves.

A real ``pytest perf`` subprocess in a temporary project runs against the reference engine. Once its first
trial file appears it gets SIGINT or SIGTERM (only the pytest process, as a terminal or a CI runner sends
it: the engine runs in its own session). It must exit promptly, leave no engine process, keep the trial
files already complete (each one parses), and leave no half-written file: verdicts and report are complete
or absent, and the interrupted case is failed as "interrupted", never judged. A complete run's files
(results, logs, verdicts, report, baseline) are checked for ordinary permissions (0644 less the umask).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from perfgate.schema.result import read_result

MATRIX = """
scenarios_dir: scenarios
engines:
  sim:
    kind: sim
    flags: [--ttft-base-ms, "20", --itl-ms, "4"]
    boot_timeout_s: 30
models:
  {model}: {{path: {model}}}
runs:
  - hardware: cpu
    engines: [sim]
    models: [{model}]
    scenarios: [slow, after]
"""
SLOW = """
name: slow
num_requests: 40
prompt_tokens: 8
max_tokens: 24
concurrency: 2
warmup_requests: 1
trials: 8
"""
AFTER = SLOW.replace("name: slow", "name: after")
COMPLETE_RUN_ATTEMPTS = 3


@pytest.fixture
def project(tmp_path, perf_project):
    model = f"intr-{uuid.uuid4().hex[:8]}"  # in the sim's command line: finds survivors
    return perf_project(tmp_path, MATRIX.format(model=model), {"slow": SLOW, "after": AFTER}), model


def _sims(model: str) -> list[int]:
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if model in " ".join(p.info["cmdline"] or []) and "perfgate.sim" in " ".join(p.info["cmdline"] or []) \
                    and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _start(root: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PERFGATE_MACHINE": "intr-box"}
    return subprocess.Popen([sys.executable, "-m", "pytest", "perf", "-q", "-p", "no:cacheprovider", *args],
                            cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # our own group: a test failure below can still clean up


def _no_partial_files(root: Path) -> None:
    left = [p for p in root.rglob("*.tmp")]
    assert left == [], left  # write_text_atomic's temp files: none survives
    for path in (root / "reports" / "results").glob("*.result.json"):
        read_result(path)  # every result file there is complete and valid
    verdicts = root / "reports" / "verdicts.json"
    if verdicts.exists():
        json.loads(verdicts.read_text())
    for name in ("index.html", "summary.md"):
        f = root / "reports" / name
        if f.exists():
            text = f.read_text()
            assert text.strip(), name
            if name == "index.html":
                assert text.rstrip().endswith("</html>")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_mid_run_stops_tears_down_and_keeps_complete_results(project, sig):
    root, model = project
    proc = _start(root)
    try:
        results = root / "reports" / "results"
        deadline = time.monotonic() + 120
        while not list(results.glob("*.result.json")):
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no trial file within 120 s"
            time.sleep(0.05)
        assert _sims(model), "the engine should be up mid-run"
        t0 = time.monotonic()
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
        stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert stopped_in < 30, f"took {stopped_in:.1f}s to stop:\n{out[-3000:]}"
    assert proc.returncode == 2, out[-3000:]  # pytest's "interrupted"
    time.sleep(0.2)
    assert _sims(model) == [], out[-3000:]  # the engine was torn down, not orphaned
    _no_partial_files(root)
    assert sorted(results.glob("*.result.json"))  # the trials completed before the signal are kept
    verdicts = json.loads((root / "reports" / "verdicts.json").read_text())["cases"]
    assert len(verdicts) == 1  # the second scenario never started
    case = verdicts[0]
    assert case["status"] == "failed" and "interrupted" in case["reason"] and case["verdicts"] == []


def test_every_file_a_complete_run_writes_is_0644(project):
    root, _ = project
    for name in ("slow", "after"):
        text = (root / "scenarios" / f"{name}.yaml").read_text()
        (root / "scenarios" / f"{name}.yaml").write_text(text.replace("trials: 8", "trials: 1")
                                                         .replace("num_requests: 40", "num_requests: 6"))
    # A complete run writes baselines too, and a client-bound trial (a busy box stalled the load client) writes
    # none, by design: such a run (exit 1, every other case's baseline written) is run again, nothing else is.
    for _ in range(COMPLETE_RUN_ATTEMPTS):
        proc = _start(root, "--perf-update-baselines")
        out, _ = proc.communicate(timeout=300)
        if proc.returncode != 1:
            break
        statuses = {c["status"] for c in json.loads((root / "reports" / "verdicts.json").read_text())["cases"]}
        assert "client_bound" in statuses and statuses <= {"client_bound", "baseline_written"}, (statuses, out[-3000:])
    assert proc.returncode == 0, out[-3000:]
    umask = os.umask(0o022)
    os.umask(umask)
    files = [p for d in ("reports", "baselines") for p in (root / d).rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".json", ".log", ".html", ".md"} <= kinds, kinds  # results, verdicts, baselines, logs, report
    assert len(list((root / "baselines").rglob("*.json"))) == 2  # one per case (slow, after), checked below
    wrong = {str(p.relative_to(root)): oct(p.stat().st_mode & 0o777) for p in files
             if p.stat().st_mode & 0o777 != 0o644 & ~umask}
    assert wrong == {}
    _no_partial_files(root)
