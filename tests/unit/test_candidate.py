"""A candidate given as a spec, derived from a matrix engine entry (engines/candidate.py), and the suite's
selection of its cases (plugin ``--perf-candidate``); the real perf/matrix.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfgate.config.matrix import EngineConfig, load_engines, load_matrix
from perfgate.engines.candidate import CandidateError, derive_candidate, parse_candidate, with_candidate

MATRIX = Path(__file__).resolve().parents[2] / "perf" / "matrix.yaml"
BASE = EngineConfig(id="vllm-gpu", kind="vllm", spec="vllm==0.32.0", flags=("--gpu-memory-utilization", "0.85"),
                    env=(("VLLM_SERVER_DEV_MODE", "1"),), extra_index_urls=("https://i.invalid/0.32.0/cu129",),
                    tensor_parallel_size=2)


def test_a_spec_changes_the_install_source_and_keeps_everything_else():
    c = derive_candidate(BASE, "vllm==0.33.0")
    assert (c.id, c.spec, c.wheel, c.extra_index_urls, c.index_url) == ("vllm-gpu-0.33.0", "vllm==0.33.0", None, (),
                                                                        None)
    assert (c.kind, c.flags, c.env, c.tensor_parallel_size) == (BASE.kind, BASE.flags, BASE.env, 2)


def test_a_wheel_names_its_version_and_an_index_its_cuda_tag():
    w = derive_candidate(BASE, "/wheels/vllm-0.33.0+cu129-cp38-abi3-manylinux_2_31_x86_64.whl")
    assert (w.id, w.spec, w.wheel) == ("vllm-gpu-0.33.0-cu129", "vllm==0.33.0",
                                       "/wheels/vllm-0.33.0+cu129-cp38-abi3-manylinux_2_31_x86_64.whl")
    i = derive_candidate(BASE, "vllm==0.33.0 --extra-index-url https://i.invalid/0.33.0/cu129 --pre")
    assert (i.id, i.extra_index_urls, i.pip_args) == ("vllm-gpu-0.33.0-cu129", ("https://i.invalid/0.33.0/cu129",),
                                                      ("--pre",))
    assert derive_candidate(BASE, "vllm==0.33.0", taken={"vllm-gpu-0.33.0"}).id == "vllm-gpu-0.33.0-candidate"


@pytest.mark.parametrize("option,text", [
    ("vllm-gpu", "give ENGINE=SPEC"),
    ("vlm-gpu=vllm==0.33.0", "not an engine of the matrix; did you mean 'vllm-gpu'"),
    ("vllm-gpu=vllm>=0.33", "pin an exact version"),
    ("vllm-gpu=sglang==0.5.23", "changes the version, not the engine"),
    ("vllm-gpu=vllm==0.33.0 --no-deps", "is not one of --extra-index-url URL"),
    ("vllm-gpu=/tmp/not-a-wheel.whl", "is not a wheel file name"),
])
def test_a_candidate_that_cannot_be_used_is_one_line(option, text):
    with pytest.raises(CandidateError, match=None) as exc:
        parse_candidate(option, load_engines(MATRIX))
    assert text in str(exc.value), str(exc.value)


def test_the_candidate_runs_its_base_engines_cases():
    cases = load_matrix(MATRIX)
    cand = parse_candidate("vllm-gpu=vllm==0.33.0", load_engines(MATRIX))
    out = with_candidate(cases, "vllm-gpu", cand)
    theirs = sorted((c.model.name, c.scenario.name) for c in out if c.engine.id == cand.id)
    base = sorted((c.model.name, c.scenario.name) for c in cases if c.engine.id == "vllm-gpu")
    assert theirs == base and base


class _Config:
    """What plugin._select reads of a pytest config: its options (and no terminal)."""

    def __init__(self, **options):
        self.options = {"--perf-engine": [], "--perf-model": [], "--perf-scenario": [], "--perf-endpoint": None,
                        "--perf-compare-to": None, "--perf-compare-model": None, "--perf-candidate": None,
                        "--perf-matrix": str(MATRIX), **options}
        self.rootpath = MATRIX.parents[1]
        self.stash: dict = {}
        self.pluginmanager = type("PM", (), {"get_plugin": staticmethod(lambda name: None)})()

    def getoption(self, name):
        return self.options[name]


def test_the_suite_selects_the_candidate_against_its_base_without_saturation():
    from perfgate.plugin import _select

    picked = _select(load_matrix(MATRIX), _Config(**{"--perf-candidate": "vllm-gpu=vllm==0.33.0",
                                                     "--perf-compare-to": "vllm-gpu"}))
    assert picked and {c.engine.id for c in picked} == {"vllm-gpu-0.33.0"}
    assert not [c for c in picked if c.scenario.spec.saturation is not None]  # study-f left out under A/B
    alone = _select(load_matrix(MATRIX), _Config(**{"--perf-candidate": "vllm-gpu=vllm==0.33.0"}))
    assert any(c.scenario.family == "study-f-saturation" for c in alone)  # no A/B: saturation runs


def test_perfgate_compare_takes_a_candidate_spec(capsys):
    """B derived from A's entry; a spec that pins nothing is refused in one line before anything boots."""
    from perfgate.cli import main
    from perfgate.cli.compare import _candidate_or_b

    args = type("A", (), {"a": "vllm-gpu", "b": None, "candidate_spec": "vllm==0.33.0"})()
    assert _candidate_or_b(args, load_engines(MATRIX)).spec == "vllm==0.33.0"
    rc = main(["compare", "vllm-gpu", "--candidate-spec", "vllm>=0.33", "--scenario", "study-b-small",
               "--model", "opt-125m", "--matrix", str(MATRIX), "--hardware", "gpu"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("perfgate: --candidate-spec: candidate spec 'vllm>=0.33': pin an exact"), err


def test_the_suite_says_in_one_line_that_an_ab_leaves_saturation_out(tmp_path):
    """The real plugin on the real matrix, collection only (nothing boots; no GPU here: every case skips)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-m", "pytest", "perf", "-m", "gpu", "--collect-only", "-q",
                          "-p", "no:cacheprovider", "--perf-results", str(tmp_path / "r"),
                          "--perf-compare-to", "vllm-gpu", "--perf-candidate", "vllm-gpu=vllm==0.33.0"],
                         cwd=MATRIX.parents[1], capture_output=True, text=True, env=env, timeout=120)
    lines = out.stdout.splitlines()
    said = [ln for ln in lines if "leaves out saturation" in ln]
    assert said == ["perfgate: live A/B leaves out saturation scenarios (study-f-saturation): run them on each "
                    "engine alone"], out.stdout + out.stderr
    collected = [ln for ln in lines if ln.startswith("perf/test_serving.py::")]
    assert collected and all("vllm-gpu-0.33.0-" in ln and "study-f" not in ln for ln in collected), collected


def test_a_bad_candidate_option_is_a_usage_error_before_collection(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-m", "pytest", "perf", "-m", "gpu", "--collect-only", "-q",
                          "-p", "no:cacheprovider", "--perf-results", str(tmp_path / "r"),
                          "--perf-candidate", "vlm-gpu=vllm==0.33.0"],
                         cwd=MATRIX.parents[1], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 4, out.stdout + out.stderr  # pytest's usage error
    assert "perfgate: --perf-candidate: 'vlm-gpu' is not an engine of the matrix; did you mean 'vllm-gpu'" \
        in out.stderr, out.stderr


@pytest.mark.parametrize("wheel, spec", [
    ("https://w.invalid/vllm-0.33.0%2Bcu129-cp38-abi3-manylinux_2_31_x86_64.whl", "vllm==0.33.0"),
    ("/w/flash_attn-2.8.3-1-cp311-cp311-linux_x86_64.whl", "flash-attn==2.8.3"),  # build tag; name normalised
])
def test_a_wheel_names_its_distribution_and_public_version(wheel, spec):
    from perfgate.engines.candidate import _wheel_spec

    assert _wheel_spec(wheel) == spec
