"""benchmarks/gpu_check.py on a machine without an NVIDIA GPU: one line naming NVML's error, exit 2, at once.

(What it checks on a real GPU cannot run here; docs/engines.md says where it has run.)
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _has_gpu() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


@pytest.mark.skipif(_has_gpu(), reason="this machine has an NVIDIA GPU: run benchmarks/gpu_check.py itself")
def test_no_gpu_says_so_and_exits_2_in_a_second():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True, text=True,
                         env=env, timeout=60)
    elapsed = time.perf_counter() - t0
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout.startswith("no NVIDIA GPU: NVML: ") and len(out.stdout.splitlines()) == 1, out.stdout
    assert out.stderr == ""
    assert elapsed < 5  # a second on an idle machine; torch and perfgate are not even imported
