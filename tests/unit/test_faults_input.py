"""Bad input gets one clear line, before any engine boots where it can, and loses nothing.

Typos in the matrix, a scenario or a selection option come back with a did-you-mean; invalid values,
a missing model path, corrupt or old result and baseline files, a port in use and an unwritable results
directory each get one line naming what is wrong. The pytest cases run ``pytest perf`` in a temporary
project as a user would; none of them gets as far as booting an engine.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from perfgate.config.matrix import (
    Case,
    EngineConfig,
    MatrixError,
    ModelSpec,
    ScenarioFile,
    expand_sweep,
    load_matrix,
)
from perfgate.engines import get_adapter
from perfgate.engines.base import ModelRef
from perfgate.engines.server import EngineServer, ServerError, describe_exit
from perfgate.judge.baselines import BaselineError, load_baseline
from perfgate.measure.records import ERROR_CLASS, ErrorKind
from perfgate.schema.result import Result, ResultError, read_result
from perfgate.schema.status import STATUS_GROUPS, CaseStatus, FaultClass, StatusGroup, count_statuses
from perfgate.session import PerfSession, Settings
from perfgate.sim import parse_fault

MATRIX = """
scenarios_dir: scenarios
engines:
  sim: {kind: sim, boot_timeout_s: 20}
models:
  sim-model: {path: sim-model}
runs:
  - {hardware: cpu, engines: [sim], models: [sim-model], scenarios: [gate]}
"""
SCENARIO = "name: gate\nnum_requests: 4\nprompt_tokens: 4\nmax_tokens: 4\nconcurrency: 1\ntrials: 1\n"


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "perf", "-q", "-p", "no:cacheprovider", *args],
                          cwd=project, capture_output=True, text=True, timeout=120)


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if "perfgate:" in ln]


# -- the matrix and scenarios -----------------------------------------------------------------------


@pytest.mark.parametrize("old, new, message", [
    ("engines: [sim]", "engines: [simm]", "runs.0: unknown engine 'simm'; did you mean 'sim'?"),
    ("models: [sim-model]", "models: [sim-modle]", "runs.0: unknown model 'sim-modle'; did you mean 'sim-model'?"),
    ("scenarios: [gate]", "scenarios: [gaet]", "runs.0: no scenario matches 'gaet' in scenarios; did you mean 'gate'?"),
    ("kind: sim,", "kind: smi,", "engines.sim: Value error, unknown engine kind 'smi'; did you mean 'sim'?"),
    ("boot_timeout_s: 20", "boot_timout_s: 20", "engines.sim.boot_timout_s: unknown key 'boot_timout_s'; "
                                                "did you mean 'boot_timeout_s'?"),
    ("boot_timeout_s: 20", "boot_timeout_s: -1", "engines.sim.boot_timeout_s: Input should be greater than 0"),
    ("{hardware: cpu,", "{hardwear: cpu,", "runs.0.hardwear: unknown key 'hardwear'; did you mean 'hardware'?"),
    ("sim-model: {path: sim-model}", "sim-model: {recipe: nope.yaml}", "models.sim-model: recipe "),
])
def test_matrix_typos_and_invalid_values_get_one_line_with_a_suggestion(tmp_path, perf_project, old, new, message):
    assert old in MATRIX
    project = perf_project(tmp_path, MATRIX.replace(old, new), {"gate": SCENARIO})
    with pytest.raises(MatrixError) as info:
        load_matrix(project / "perf" / "matrix.yaml")
    text = str(info.value)
    assert "\n" not in text and message in text, text


@pytest.mark.parametrize("line, message", [
    ("concurency: 2", "concurency: unknown key 'concurency'; did you mean 'concurrency'?"),
    ("timeout_s: 0", "timeout_s: Input should be greater than 0"),
    ("trial_timeout_s: -5", "trial_timeout_s: Input should be greater than 0"),
    ("max_tokens: many", "max_tokens: Input should be a valid integer"),
])
def test_scenario_typos_and_invalid_values(tmp_path, perf_project, line, message):
    project = perf_project(tmp_path, MATRIX, {"gate": SCENARIO + line + "\n"})
    with pytest.raises(MatrixError) as info:
        load_matrix(project / "perf" / "matrix.yaml")
    assert str(info.value).startswith(str(project / "scenarios" / "gate.yaml")) and message in str(info.value)


# -- pytest options: caught at collection or configure, before any engine boots -----------------------


@pytest.mark.parametrize("args, message", [
    (("--perf-engine", "simm"), "perfgate: --perf-engine 'simm' matches nothing in the matrix; did you mean 'sim'?"),
    (("--perf-model", "sim-mdoel"), "perfgate: --perf-model 'sim-mdoel' matches nothing in the matrix; "
                                    "did you mean 'sim-model'?"),
    (("--perf-scenario", "gat*x"), "perfgate: --perf-scenario 'gat*x' matches nothing in the matrix; "),
    (("--perf-compare-model", "sim-modl"), "perfgate: --perf-compare-model 'sim-modl' is not a model of the "
                                           "matrix; did you mean 'sim-model'?"),
    (("--perf-compare-to", "smi"), "perfgate: --perf-compare-to 'smi' is not an engine of the matrix; "
                                   "did you mean 'sim'?"),
    (("--perf-request-timeout", "0"), "perfgate: --perf-request-timeout must be > 0, not 0"),
    (("--perf-results", "pytest.ini/reports"), "perfgate: results directory "),
])
def test_bad_options_fail_in_one_line_before_any_boot(tmp_path, perf_project, args, message):
    project = perf_project(tmp_path, MATRIX, {"gate": SCENARIO})
    proc = _pytest(project, *args)
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]  # pytest's usage error
    lines = _error_lines(proc)
    assert len(lines) == 1 and message in lines[0], lines
    assert not (project / "reports" / "logs").exists()  # no engine was started


def test_unwritable_results_directory_names_it(tmp_path, perf_project):
    project = perf_project(tmp_path, MATRIX, {"gate": SCENARIO})
    proc = _pytest(project, "--perf-results", "pytest.ini/reports")
    line = _error_lines(proc)[0]
    assert f"{project / 'pytest.ini' / 'reports'} is not writable" in line


# -- engines: a missing model path, a port in use ---------------------------------------------------------


def _scenario():
    return expand_sweep(ScenarioFile(name="s", num_requests=2, prompt_tokens=2, max_tokens=2, concurrency=1))[0]


def test_missing_local_model_path_fails_before_boot(tmp_path):
    session = PerfSession(Settings(results_dir=tmp_path / "r", cache_dir=tmp_path / "c",
                                   baselines_dir=tmp_path / "b", machine=None))
    case = Case("cpu", EngineConfig(id="sim", kind="sim"), ModelSpec("m", None, str(tmp_path / "no-such-model")),
                _scenario())
    outcome = session.run_case(case)
    assert outcome.error == f"{case.id}: model 'm': path {tmp_path / 'no-such-model'} does not exist"
    assert session._pool is None  # nothing booted, not even a pool
    session.finish()


def test_a_port_in_use_is_refused_before_spawning(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = EngineServer(get_adapter("sim"), EngineConfig(id="sim", kind="sim"), ModelRef("m", "m"),
                              Path(sys.executable), tmp_path / "log", port=port)
        with pytest.raises(ServerError) as info:
            server.start()
    assert str(info.value) == f"sim: port 127.0.0.1:{port} is already in use"
    assert info.value.kind is FaultClass.SERVER_ERROR and server.proc is None


# -- result and baseline files: corrupt, truncated, old schema ---------------------------------------------


def _damaged(tmp_path: Path, good: dict) -> dict[str, Path]:
    text = json.dumps(good)
    cases = {
        "empty": "",
        "truncated": text[: len(text) // 2],
        "not json": "{ not json",
        "a list": "[]",
        "old schema": json.dumps({**good, "schema_version": 0}),
        "nan": text.replace('"schema_version"', '"x": NaN, "schema_version"', 1),
        "binary": "\udcff",
    }
    out = {}
    for name, payload in cases.items():
        p = tmp_path / name.replace(" ", "-") / "f.json"
        p.parent.mkdir()
        if name == "binary":
            p.write_bytes(b"\xff\xfe{")
        else:
            p.write_text(payload)
        out[name] = p
    return out


@pytest.mark.parametrize("reader, error, good", [
    (read_result, ResultError, {"schema_version": 1, "test_id": "t", "scenario": "s"}),
    (lambda p: load_baseline(p, check_location=False), BaselineError, {"schema_version": 2, "key": {}}),
])
def test_damaged_files_get_one_line_naming_the_file_and_stay_untouched(tmp_path, reader, error, good):
    for name, path in _damaged(tmp_path, good).items():
        before = path.read_bytes()
        with pytest.raises(error) as info:
            reader(path)
        msg = str(info.value)
        assert msg.startswith(f"{path}: ") and "\n" not in msg, (name, msg)
        assert path.read_bytes() == before


# -- the words ---------------------------------------------------------------------------------------------


def test_fault_classes_are_one_vocabulary():
    # docs/faults.md's words, most severe first; the enum's values are what result files hold
    assert [str(f) for f in FaultClass] == ["engine crashed", "engine hung", "boot timeout", "server error",
                                            "throttled", "client error"]
    assert set(ERROR_CLASS) == {k.value for k in ErrorKind}
    assert all(isinstance(v, FaultClass) for v in ERROR_CLASS.values())
    assert ServerError("e: anything").kind is FaultClass.SERVER_ERROR  # the raise site names any other class
    assert describe_exit(-9) == "code -9 (SIGKILL)" and describe_exit(3) == "code 3"


def test_a_result_carries_its_fault_as_the_same_string_and_old_files_still_read(tmp_path):
    fixture = next((Path(__file__).parents[2] / "fixtures" / "report").rglob("*.result.json"))
    doc = json.loads(fixture.read_text())
    assert "fault" not in doc  # written before Result.fault existed
    old = tmp_path / "old.result.json"
    old.write_text(json.dumps(doc))
    assert read_result(old).fault is None
    failed = Result.model_validate({**doc, "status": "failed", "fault": "engine hung",
                                    "failure_reason": "engine hung: all 2 requests failed (timeout 2)"})
    assert failed.fault is FaultClass.ENGINE_HUNG
    assert json.loads(failed.model_dump_json())["fault"] == "engine hung"


def test_every_case_status_has_one_group_and_one_count():
    assert set(STATUS_GROUPS) == set(get_args(CaseStatus))
    statuses: list[CaseStatus] = ["ok", "regression", "no_baseline", "not_judged", "failed", "slo_violated",
                                  "client_bound", "baseline_written", "reference", "skipped", "skipped"]
    c = count_statuses(statuses)
    assert (c.cases, c.compared, c.regression, c.not_compared, c.no_baseline, c.failed, c.baseline_written,
            c.skipped) == (8, 2, 1, 2, 1, 3, 1, 2)
    assert c.cases == sum(STATUS_GROUPS[s] not in (StatusGroup.SKIPPED, StatusGroup.REFERENCE) for s in statuses)


@pytest.mark.parametrize("text, message", [
    ("crash-after-tokenz:3", "unknown fault 'crash-after-tokenz'; did you mean 'crash-after-tokens'?"),
    ("http-503:1.5", "fault http-503: the fraction must be in (0, 1], not 1.5"),
    ("http-503:after=x", "fault http-503: after=N needs a whole number, not 'x'"),
    ("truncate", "fault truncate needs a parameter"),
    ("reset:-1", "fault reset: '-1' must be a finite number >= 0"),
    ("malformed-json:0", "fault malformed-json: chunk numbers start at 1"),
])
def test_sim_fault_options_are_checked(text, message):
    with pytest.raises(ValueError) as info:
        parse_fault(text)
    assert message in str(info.value)


def test_sim_refuses_a_bad_fault_at_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "perfgate.sim", "--fault", "hang"], capture_output=True, text=True,
                          timeout=60, env={**os.environ})
    assert proc.returncode == 2 and "unknown fault 'hang'" in proc.stderr.splitlines()[-1]
