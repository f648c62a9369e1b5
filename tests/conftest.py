"""Fixtures shared by perfgate's own tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests run on a busy 2-core box (the whole suite, other jobs): wall-clock time per example says
# nothing about the code there, so no deadline and no too-slow check; the example counts stay per test.
# HYPOTHESIS_PROFILE=default (or --hypothesis-profile=default) restores Hypothesis's own 200 ms deadline.
settings.register_profile("busy-box", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "busy-box"))

@pytest.fixture(autouse=True)
def _no_shared_history(monkeypatch: pytest.MonkeyPatch) -> None:
    """perfgate's own tests keep no history unless they ask for a store of their own (PERFGATE_HISTORY=URL):
    the developer's history in the perfgate cache is never written by a test, and no test's verdict depends on
    what an earlier test (or run) left there. The pytest subprocesses the e2e tests start inherit it."""
    monkeypatch.setenv("PERFGATE_HISTORY", "off")


SERVING_TEST = "def test_serving(perf_case, perf_run):\n    perf_run(perf_case).check()\n"
"""The one-line suite a user's project holds (perf/test_serving.py)."""


@pytest.fixture
def perf_project() -> Callable[..., Path]:
    """``perf_project(root, matrix, {"name": yaml, ...})``: a user's project as `pytest perf` sees it (perf/matrix.yaml,
    perf/test_serving.py, scenarios/<name>.yaml, a pytest.ini that makes ``root`` the rootdir); returns ``root``."""

    def make(root: Path, matrix: str, scenarios: dict[str, str]) -> Path:
        (root / "perf").mkdir(parents=True)
        (root / "scenarios").mkdir()
        (root / "perf" / "matrix.yaml").write_text(matrix)
        (root / "perf" / "test_serving.py").write_text(SERVING_TEST)
        for name, text in scenarios.items():
            (root / "scenarios" / f"{name}.yaml").write_text(text)
        (root / "pytest.ini").write_text("[pytest]\n")
        return root

    return make
