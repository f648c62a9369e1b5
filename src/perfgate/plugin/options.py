"""The command line: perfgate's options, checked into :class:`~perfgate.session.Settings` (one line per bad
value), the xdist refusal, and the result hooks the session applies to each trial."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perfgate.config.matrix import MatrixError, load_engines, load_matrix, load_models
from perfgate.engines.provision import default_cache_dir
from perfgate.measure.environment import machine_name
from perfgate.plugin.progress import _terminal_progress
from perfgate.plugin.selection import _candidate, _check_selection, _matrix_entry, _matrix_path
from perfgate.schema.result import Result
from perfgate.session import Settings
from perfgate.session.history import history_url


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
                     "(or a full 'Header: value', or @FILE: read from that file); default: $PERFGATE_ENDPOINT_TOKEN "
                     "if set; re-read every trial")
    # -- an endpoint as deployed (docs/engines.md, "Endpoints behind KServe or an ingress") --
    g.addoption("--perf-endpoint-server-url", default=None, metavar="URL",
                help="base of the endpoint's server routes (/metrics, /tokenize, /version) when it is not the "
                     "OpenAI routes' base (default: --perf-endpoint)")
    g.addoption("--perf-endpoint-preset", default=None, choices=["kserve"],
                help="kserve: OpenAI routes under <URL>/openai/v1/..., server routes at <URL>")
    g.addoption("--perf-endpoint-header", action="append", default=[], metavar="'NAME: VALUE'",
                help="an extra header on every request to the endpoint, e.g. 'Host: model.example.com' (repeatable)")
    g.addoption("--perf-endpoint-throttle", default="count", choices=["count", "retry", "fail"],
                help="what a 429/503 from the endpoint does: count it as the throttled rate (default), retry it "
                     "with backoff (3 at most, Retry-After honoured), or fail the trial")
    g.addoption("--perf-trials", type=int, default=None, help="override every scenario's trial count")
    g.addoption("--perf-baselines", default="baselines", help="baseline store directory (default: baselines)")
    g.addoption("--perf-update-baselines", action="store_true", help="write baselines from complete, error-free runs")
    g.addoption("--perf-baseline-version", default=None, help="compare against the baseline of this engine version (upgrade question)")
    g.addoption("--perf-allow-env-mismatch", action="store_true", help="compare even when hardware/flags differ from the baseline")
    g.addoption("--perf-machine", default=None,
                help="this runner's name; baselines are keyed by it (default: $PERFGATE_MACHINE; unnamed: no stored comparison)")
    g.addoption("--perf-strict", action="store_true",
                help="fail a case that did not answer: compared nothing (no baseline, environment mismatch, another "
                     "machine) or inconclusive (compared, nothing decided)")
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
    g.addoption("--perf-history", default=None, metavar="URL",
                help="the history store every case is recorded in and judged against: a SQLite file or a "
                     "postgresql:// URL (default: $PERFGATE_HISTORY, else history.sqlite in the perfgate cache); "
                     "'off' keeps no history")
    g.addoption("--perf-boot-timeout", type=float, default=None, metavar="SECONDS",
                help="override every engine's boot_timeout_s (default: the matrix's, 600)")


def settings_from(config: pytest.Config) -> Settings:
    """The session's :class:`~perfgate.session.Settings` from the command line, every option checked:
    a bad value is one ``pytest.UsageError`` line here, before collection or any boot."""
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
    endpoint_options = _endpoint_options(config)
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
    return Settings(
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
        history=history_url(config.getoption("--perf-history")),
        endpoint_options=endpoint_options,
    )


def _endpoint_options(config: pytest.Config):
    """The endpoint's deployment options, checked here (a malformed header is a usage error, in one line)."""
    from perfgate.engines.endpoint import EndpointError, EndpointOptions, parse_header

    try:
        headers = tuple(parse_header(h) for h in config.getoption("--perf-endpoint-header"))
    except EndpointError as exc:
        raise pytest.UsageError(f"perfgate: --perf-endpoint-header: {exc}") from None
    return EndpointOptions(server_url=config.getoption("--perf-endpoint-server-url"),
                           preset=config.getoption("--perf-endpoint-preset"), headers=headers,
                           throttle=config.getoption("--perf-endpoint-throttle"))


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
