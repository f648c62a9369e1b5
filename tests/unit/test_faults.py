"""The fault matrix against the reference engine: every fault is classified, counted, cleaned up, and kept out
of baselines and the report, and the session goes on with the next case.

Each case boots a real ``perfgate sim`` process with one ``--fault`` (docs/faults.md) through the same
session, pool and lifecycle code as the suite; one healthy case at the end shows the session still works and
writes a baseline. Cases whose ids are listed in docs/faults.md: this test is where that table comes from.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psutil
import pytest

from perfgate.config.matrix import (
    Case,
    EngineConfig,
    ModelSpec,
    ScenarioFile,
    expand_sweep,
)
from perfgate.measure.metrics import error_classes
from perfgate.report.data import gather
from perfgate.session import PerfSession, Settings

# fault flag -> (expected fault class or None for "measured normally", request error kinds expected)
# Budget per measured trial: 8 requests × 8 tokens, after the readiness probe (1 request, 1 token) and one
# warm-up request (8 tokens): crash-after-tokens:30 falls inside the first measured trial.
FAULTS: dict[str, tuple[str | None, set[str]]] = {
    "exit-at-boot:3": ("engine crashed", set()),
    "slow-boot:30": ("boot timeout", set()),
    "crash-after-requests:5": ("engine crashed", {"connect", "mid_stream"}),
    "crash-after-tokens:30": ("engine crashed", {"connect", "mid_stream"}),
    "hang-after-tokens:30": ("engine hung", {"timeout"}),
    "http-429:0.5": ("throttled", {"http_429"}),  # an engine perfgate started: its 429 fails the trial
    "http-500:after=4": ("server error", {"http_5xx"}),
    "http-503:0.25": ("throttled", {"http_503"}),
    "truncate:3": ("server error", {"mid_stream"}),
    "malformed-json:2": ("server error", {"mid_stream"}),
    "invalid-utf8:2": ("server error", {"mid_stream"}),
    "reset:3": ("server error", {"mid_stream"}),
    "oversized-chunk:262144": (None, set()),  # 256 KiB in one SSE event: read and counted like any chunk
}
SCENARIO = dict(name="faults", num_requests=8, prompt_tokens=4, max_tokens=8, concurrency=2, warmup_requests=1,
                trials=2, timeout_s=2.0, trial_timeout_s=20.0,  # a healthy request takes ~15 ms
                max_coalesced_fraction=1.0)  # 1 ms ITL: a busy client reads events together; not what is tested


def _case(flags: tuple[str, ...], engine_id: str, model: str) -> Case:
    boot_timeout = 3.0 if any(f.startswith("slow-boot") for f in flags) else 60.0  # a busy box boots slowly
    engine = EngineConfig(id=engine_id, kind="sim", flags=("--ttft-base-ms", "5", "--itl-ms", "1", *flags),
                          boot_timeout_s=boot_timeout)
    scenario = expand_sweep(ScenarioFile(**SCENARIO))[0]
    return Case("cpu", engine, ModelSpec(model, None, model), scenario)


def _sim_processes(marker: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if marker in " ".join(p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


@pytest.fixture(scope="module")
def matrix_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults")
    marker = f"faultmodel-{uuid.uuid4().hex[:8]}"  # in every sim's command line: finds survivors
    session = PerfSession(Settings(results_dir=out / "reports", cache_dir=out / "cache",
                                   baselines_dir=out / "baselines", machine="fault-box", update_baselines=True))
    outcomes = {}
    for i, fault in enumerate([*FAULTS, None]):
        flags = ("--fault", fault) if fault else ()
        outcomes[fault] = session.run_case(_case(flags, f"sim-{i}", marker))
    session.finish()
    return session, outcomes, out, marker


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_is_classified_in_one_line_and_counted(matrix_run, fault):
    _, outcomes, _, _ = matrix_run
    expected, kinds = FAULTS[fault]
    outcome = outcomes[fault]
    action, line = outcome.gate()
    if expected is None:
        # Measured normally; on a busy box parsing the big event can stall the client's loop past 10 ms,
        # and then the trial is client-bound (its latencies describe the client), which is also right.
        assert outcome.status in ("baseline_written", "client_bound"), line
        assert outcome.results and all(r.error is None and r.output_tokens == 8
                                       for t in outcome.results for r in t.requests)
        return
    assert action == "fail" and outcome.status == "failed"
    first = line.splitlines()[0]
    assert first.startswith(f"{outcome.case.id}: {expected}: "), first
    if outcome.error and expected != "boot timeout":
        assert "--- last 30 lines of" in line and "perfgate sim: fault" in line  # the server's own words
    results = [r for r in outcome.results]
    if not results:  # the case ended in a ServerError: its trial files are on disk
        results = _trial_files(matrix_run[2], outcome.case.id)
    counted = {k for r in results if r.summary for k in r.summary.errors}
    assert kinds <= counted or not kinds, (counted, first)
    if kinds:
        failed = next(r for r in results if r.status == "failed")
        assert expected in error_classes(failed.summary.errors) or expected == "engine crashed"


def _trial_files(out: Path, case_id: str):
    from perfgate.schema.result import iter_results, read_result

    return [r for p in iter_results(out / "reports") if (r := read_result(p)).test_id == case_id]


def test_no_engine_process_survives(matrix_run):
    _, _, _, marker = matrix_run
    assert _sim_processes(marker) == []


def test_session_went_on_and_only_complete_error_free_runs_became_baselines(matrix_run):
    _, outcomes, out, _ = matrix_run
    assert outcomes[None].status == "baseline_written"  # the healthy case after all the faults
    wrote = {fault for fault, o in outcomes.items() if o.baseline_written}
    assert wrote - {"oversized-chunk:262144"} == {None}
    for path in (out / "baselines").rglob("*.json"):
        assert all(t["error_rate"] == 0.0 for t in json.loads(path.read_text())["trials"])


def test_failed_cases_carry_no_numbers_into_verdicts_or_report(matrix_run):
    _, outcomes, out, _ = matrix_run
    verdicts = {c["case_id"]: c for c in json.loads((out / "reports" / "verdicts.json").read_text())["cases"]}
    data = gather([out / "reports"], out / "reports")
    views = {v.case_id: v for v in data.cases}
    for fault, (expected, _) in FAULTS.items():
        case_id = outcomes[fault].case.id
        if expected is None:
            continue
        assert verdicts[case_id]["status"] == "failed" and verdicts[case_id]["verdicts"] == []
        assert expected in verdicts[case_id]["reason"].splitlines()[0]
        if case_id in views:
            assert not views[case_id].has_numbers
