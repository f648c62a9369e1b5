"""`pytest perf -m gpu` on a machine without a GPU: every GPU case skipped, in seconds, nothing installed.

A temporary project whose matrix names CUDA engines (vLLM with a CUDA wheel
index, SGLang, and a tensor-parallel engine) is driven by real `pytest`
subprocesses with an empty ``--perf-cache``: the run must skip every GPU case
with one reason line, count the skips in perfgate's summary, and leave the
cache empty (before this, the run pip-installed the CUDA build of vLLM).
Runs only where NVML finds no GPU (this machine); on a GPU box the same
cases would boot for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfgate.engines.gpus import NvmlUnavailable, load_nvml

MATRIX = """
scenarios_dir: scenarios
engines:
  vllm-gpu:
    kind: vllm
    spec: vllm==0.32.0
    extra_index_urls: ["https://example.invalid/whl/cu130"]
    flags: [--gpu-memory-utilization, "0.85"]
  sglang-gpu:
    kind: sglang
    spec: sglang==0.5.23
  vllm-tp2:
    kind: vllm
    spec: vllm==0.32.0
    tensor_parallel_size: 2
models:
  qwen: {path: Qwen/Qwen2.5-0.5B-Instruct, max_model_len: 4096}
runs:
  - hardware: gpu
    engines: [vllm-gpu, sglang-gpu, vllm-tp2]
    models: [qwen]
    scenarios: [gate]
"""
SCENARIO = "name: gate\nnum_requests: 4\nprompt_tokens: 16\nmax_tokens: 8\nconcurrency: 1\ntrials: 1\n"


def _has_gpu() -> bool:
    try:
        load_nvml().nvmlShutdown()
    except NvmlUnavailable:
        return False
    return True


pytestmark = pytest.mark.skipif(_has_gpu(), reason="this machine has a GPU: the cases would boot for real")


@pytest.fixture
def project(tmp_path, perf_project):
    perf_project(tmp_path, MATRIX, {"gate": SCENARIO})
    (tmp_path / "cache").mkdir()
    return tmp_path


def _pytest(project: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "pytest", "perf", "-m", "gpu", "-p", "no:cacheprovider", "-rs",
                          "--perf-cache", str(project / "cache"), "--perf-results", str(project / "reports"), *args],
                         cwd=project, capture_output=True, text=True, env=env, timeout=120)
    return out, time.monotonic() - t0


def test_gpu_cases_skip_in_seconds_and_install_nothing(project):
    out, elapsed = _pytest(project)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "3 skipped" in text, text
    assert "SKIPPED       3 case(s): no NVIDIA GPU (NVML: " in text  # one line in perfgate's summary
    assert "3 skipped" in [ln for ln in text.splitlines() if "cases on machine" in ln][0]
    assert list((project / "cache").iterdir()) == []  # no venv, no model, nothing
    assert elapsed < 60, f"took {elapsed:.0f}s"
    # the skips are outcomes in verdicts.json, the report and summary.md too, never a silent green
    cases = json.loads((project / "reports" / "verdicts.json").read_text())["cases"]
    assert [c["status"] for c in cases] == ["skipped"] * 3 and all("no NVIDIA GPU" in c["reason"] for c in cases)
    assert "3 skipped" in (project / "reports" / "summary.md").read_text()
    assert 'data-testid="count-skipped"><b>3</b>' in (project / "reports" / "index.html").read_text()


def test_collect_only_installs_nothing(project):
    out, _ = _pytest(project, "--collect-only", "-q")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 tests collected" in out.stdout or "test_serving" in out.stdout
    assert list((project / "cache").iterdir()) == []
