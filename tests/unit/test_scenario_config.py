"""The config types: flat and nested scenario keys, one type per engine/model, fingerprints that never move."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from perfgate.config.matrix import (
    EngineConfig,
    MatrixError,
    ModelSpec,
    ScenarioFile,
    expand_sweep,
    load_matrix,
    load_scenario_file,
)
from perfgate.config.yamlfile import validate
from perfgate.judge.baselines import _workload_identity
from perfgate.schema.result import Workload

ROOT = Path(__file__).resolve().parents[2]
BEFORE = json.loads((Path(__file__).parent / "scenario_fingerprints.json").read_text(encoding="utf-8"))
"""Workload fingerprints of every committed scenario point, computed by perfgate before the config was split into
groups (the flat ScenarioFile and its ``prompt_tokens_tolerance != 0.02`` sentinel). Regenerate only on purpose:
a change here moves every stored baseline to NOT COMPARED."""

BASE = dict(name="s", num_requests=4, prompt_tokens=16, max_tokens=8, concurrency=2)


def _identity(sc) -> str:
    return json.dumps(_workload_identity(sc.workload()), sort_keys=True)


def test_every_committed_scenario_keeps_its_fingerprint():
    now = {sc.name: _identity(sc) for p in sorted((ROOT / "fixtures" / "scenarios").glob("*.yaml"))
           for sc in load_scenario_file(p)}
    tolerant = ScenarioFile(**{**BASE, "name": "tolerant"}, prompt_tokens_tolerance=0.1)  # the sentinel's case
    now["(inline) tolerant"] = _identity(expand_sweep(tolerant)[0])
    assert set(now) == set(BEFORE)  # a new scenario file: add its fingerprint to the fixture
    assert {k: v for k, v in now.items() if v != BEFORE[k]} == {}


def test_fingerprint_roles_are_declared_on_the_workload():
    w = expand_sweep(ScenarioFile(**BASE))[0].workload()
    assert w.prompt_tokens_tolerance == 0.02  # recorded as used, left out at its default
    ident = w.identity()
    assert "prompt_tokens_tolerance" not in ident and "max_concurrency" in ident  # schema-1 fields always in
    assert ident == w.model_copy(update={"prompt_tokens_verified": True, "prefix_cache_reset": True}).identity()
    assert w.model_copy(update={"turns": 3}).identity()["turns"] == 3
    old = Workload.model_validate({**w.model_dump(), "prompt_tokens_tolerance": None})  # a result from before
    assert old.identity() == ident


def test_flat_and_nested_keys_are_one_scenario(tmp_path):
    flat = ScenarioFile(**BASE, client_http="aiohttp", ab_alpha=0.01, trials=5, assert_slo=True,
                        observe_only=["ttft_ms.p50"])
    nested = ScenarioFile(name="s", workload=dict(num_requests=4, prompt_tokens=16, max_tokens=8, concurrency=2),
                          client={"http": "aiohttp"}, ab={"alpha": 0.01}, trial={"trials": 5},
                          checks={"assert_slo": True}, policy={"observe_only": ["ttft_ms.p50"]})
    assert flat == nested
    assert (flat.client.http, flat.ab.alpha, flat.trial.trials, flat.checks.assert_slo) == ("aiohttp", 0.01, 5, True)
    assert (flat.client_http, flat.ab_alpha, flat.trials) == ("aiohttp", 0.01, 5)  # flat reads still work
    with pytest.raises(AttributeError):
        flat.client_htp  # noqa: B018 - only the routed names read through
    with pytest.raises(ValueError, match="`client.http` is given twice"):
        ScenarioFile(**BASE, client_http="raw", client={"http": "aiohttp"})


def test_a_copy_routes_flat_keys_and_is_validated():
    spec = ScenarioFile(**BASE)
    assert spec.model_copy(update={"timeout_s": 5, "client_workers": 2}).trial.timeout_s == 5
    with pytest.raises(ValueError, match="concurrency"):
        spec.model_copy(update={"concurrency": -1})
    with pytest.raises(ValueError, match="did you mean 'client_http'"):
        spec.model_copy(update={"client_htp": "raw"})


@pytest.mark.parametrize("text, message", [
    ("client_htp: raw\n", r"s.yaml: client_htp: unknown key 'client_htp'; did you mean 'client_http'\?"),
    ("client: {wrkers: 2}\n", r"s.yaml: client.wrkers: unknown key 'wrkers'; did you mean 'workers'\?"),
    ("client_workers: 0\n", r"s.yaml: client_workers: Input should be greater than or equal to 1"),
    ("saturation: {ratez: [1]}\n", r"s.yaml: saturation.ratez: unknown key 'ratez'; did you mean 'rates'\?"),
])
def test_file_errors_name_the_key_as_the_file_wrote_it(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nnum_requests: 4\nprompt_tokens: 16\nmax_tokens: 8\nconcurrency: 2\n" + text)
    with pytest.raises(MatrixError, match=message):
        load_scenario_file(path)


def test_one_engine_type_from_file_and_from_code(tmp_path):
    path = tmp_path / "matrix.yaml"
    path.write_text("engines: {e: {kind: sim, env: {B: '2', A: '1'}, flags: [--x]}}\nmodels: {m: {path: org/m}}\n"
                    "runs: []\n")
    from perfgate.config.matrix import load_engines, load_models

    engine = load_engines(path)["e"]
    assert engine == EngineConfig(id="e", kind="sim", env=(("A", "1"), ("B", "2")), flags=("--x",))
    assert hash(engine) == hash(dataclasses.replace(engine))  # a pool key
    assert load_models(path)["m"] == ModelSpec("m", None, "org/m")
    assert EngineConfig(id="mine", kind="my-engine").kind == "my-engine"  # code may bring its own adapter
    for bad, message in (("{e: {kind: tgi}}", "unknown engine kind 'tgi'"),
                         ("{e: {id: other, kind: sim}}", "`id` is the entry's key")):
        path.write_text(f"engines: {bad}\nmodels: {{m: {{path: x}}}}\nruns: []\n")
        with pytest.raises(MatrixError, match=message):
            load_engines(path)


def test_a_resolved_model_keeps_its_serving_defaults():
    spec = ModelSpec("llama", None, "org/llama", max_model_len=4096, dtype="bfloat16", engine_args=("--x",))
    ref = spec.resolved("/cache/llama")
    assert (ref.name, ref.path, ref.max_model_len, ref.dtype, ref.engine_args) == (
        "llama", "/cache/llama", 4096, "bfloat16", ("--x",))
    with pytest.raises(MatrixError, match="exactly one of `recipe` or `path`"):
        from perfgate.config.matrix import MatrixFile

        validate(MatrixFile, {"engines": {}, "models": {"m": {}}, "runs": []}, Path("matrix.yaml"))


def test_the_shipped_matrix_loads():
    cases = load_matrix(ROOT / "perf" / "matrix.yaml")
    assert cases and all(c.model.recipe is None or c.model.recipe.is_file() for c in cases)
