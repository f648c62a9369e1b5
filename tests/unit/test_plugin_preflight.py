"""The plugin's preflight on a GPU runner: a real (in-process) pytest run of a temporary project
whose GPU facts come from the NVML test double (fake_nvml.py). A case needing more GPUs than the
runner has is skipped and counted; a case whose model is not in the local HF cache fails at once
with the preflight line and the command that fetches it; nothing is installed either way."""

from __future__ import annotations

import pytest
from fake_nvml import FakeGpu, FakeNvml

from perfgate.engines import preflight

MATRIX = """
scenarios_dir: scenarios
engines:
  vllm-gpu: {kind: vllm, spec: vllm==0.32.0}
  vllm-tp2: {kind: vllm, spec: vllm==0.32.0, tensor_parallel_size: 2}
models:
  llama: {path: meta-llama/Llama-3.1-8B-Instruct, max_model_len: 8192}
runs:
  - {hardware: gpu, engines: [vllm-gpu, vllm-tp2], models: [llama], scenarios: [s]}
  - {hardware: cpu, engines: [vllm-gpu], models: [llama], scenarios: [s]}
"""


def test_gpu_runner_preflight_skips_and_blocks_before_installing(tmp_path, perf_project, monkeypatch, capsys):
    perf_project(tmp_path, MATRIX, {"s": "name: s\nnum_requests: 1\nprompt_tokens: 4\nmax_tokens: 4\nconcurrency: 1\n"})
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    probes = []

    def probe(nvml=None):
        probes.append(1)
        return preflight.GpuFacts(FakeNvml([FakeGpu("GPU-aaaa")], cuda=12090), driver="575.57.08", cuda_driver="12.9")

    monkeypatch.setattr(preflight.GpuFacts, "probe", staticmethod(probe))
    monkeypatch.chdir(tmp_path)
    rc = pytest.main(["perf", "-m", "gpu", "-p", "no:cacheprovider", "-q", "-rs", "--rootdir", str(tmp_path),
                      "--perf-cache", str(cache), "--perf-results", str(tmp_path / "reports")])
    out = capsys.readouterr().out
    assert rc == 1, out  # the blocked case fails
    assert probes == [1]  # NVML asked once for the whole session
    assert "vllm-tp2: needs 2 GPUs, this runner exposes 1" in out
    assert "perfgate preflight: BLOCK model [llama]: meta-llama/Llama-3.1-8B-Instruct is not in the local HF cache" in out
    assert "perfgate models fetch meta-llama/Llama-3.1-8B-Instruct" in out
    summary = [ln for ln in out.splitlines() if "cases on machine" in ln][0]
    assert summary.endswith("1 failed, 1 skipped"), summary
    assert list(cache.iterdir()) == []  # nothing installed
