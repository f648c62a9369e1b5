"""Which cases run: the matrix parametrizes ``perf_case``, the --perf-* selections and the candidate filter it,
and preflight marks what this machine cannot run before anything is installed or booted."""

from __future__ import annotations

import fnmatch
from dataclasses import replace
from pathlib import Path

import pytest

from perfgate._suggest import did_you_mean
from perfgate.config.matrix import Case, EngineConfig, MatrixError, load_engines, load_matrix
from perfgate.plugin.progress import _terminal_progress
from perfgate.plugin.state import STASH


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
    state = config.stash.get(STASH, None)
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
