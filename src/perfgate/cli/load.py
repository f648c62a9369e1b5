"""``perfgate load URL``: one scenario (or a sweep) against a running endpoint, no pytest; one result per trial.

Its options are the scenario's fields, with ``vllm bench serve``'s names as
aliases and its meaning of rate and concurrency; ``--format vllm`` also writes
that tool's result JSON. Exit 0 when every trial is ok, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perfgate.cli.errors import CliError, refusing


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
            raise CliError("--concurrency is the closed loop's; with a --request-rate, cap it with --max-concurrency")
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
            raise CliError(f"--goodput {slo!r}: give ttft:MS, tpot:MS and/or e2el:MS")
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


def _scenarios(args: argparse.Namespace) -> list:
    """The points to run: the scenario file's (its sweep expanded), else one made of the options."""
    from perfgate.config.matrix import (
        MatrixError,
        ScenarioFile,
        expand_sweep,
        load_scenario_file,
    )

    with refusing(MatrixError, ValueError, first_line=True):
        if args.scenario:
            scenarios = load_scenario_file(Path(args.scenario))
            if _client_options(args):
                scenarios = [type(sc)(sc.name, sc.family, sc.spec.model_copy(update=_client_options(args)), sc.root)
                             for sc in scenarios]
        else:
            scenarios = expand_sweep(ScenarioFile(**{"trials": 1, **_adhoc_fields(args)}, **_client_options(args)))
    if any(sc.spec.saturation is not None for sc in scenarios):
        raise CliError("saturation scenarios run in the suite (pytest perf --perf-scenario NAME)")
    return scenarios


def _target(args: argparse.Namespace, url: str):
    """The endpoint as a load target; the real cause (refused, /v1 URL, 401, unknown model) before any prompt
    is built."""
    from perfgate._http import probe_version
    from perfgate.engines import ModelRef
    from perfgate.engines.endpoint import (
        EndpointError,
        EndpointOptions,
        endpoint_auth,
        metrics_note,
        parse_header,
        probe,
        unknown_model,
    )
    from perfgate.engines.pool import Target
    from perfgate.schema.result import EngineInfo

    try:
        options = EndpointOptions(server_url=args.server_url, preset=args.preset,
                                  headers=tuple(parse_header(h) for h in args.header or ()), throttle=args.throttle)
        base, server = options.bases(url)
        extra = dict(options.headers) or None
        auth = endpoint_auth(getattr(args, "auth_env", None))
        found = probe(base, auth, headers=extra)
        model = args.model or (found.served[0] if found.served else None)  # as vllm bench serve without --model
        problem = found.problem or (unknown_model(found, model, "pass the served name") if model else None)
    except EndpointError as exc:
        problem, model = str(exc), None
    if problem:
        raise CliError(problem)
    if not model:
        raise CliError(f"{url}/v1/models names no model; give --model")
    target = Target(base, ModelRef(model, args.tokenizer or model), EngineInfo(name="external", base_url=url),
                    auth=auth, throttle=args.throttle, server_url=server, extra=extra)
    target.engine.version = probe_version(target.server_base, headers=target.headers)
    note = metrics_note(target.server_base, target.headers)
    if note:
        print(f"perfgate load: {note}", file=sys.stderr)
    return target


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
    from perfgate.measure.trial import result_path
    from perfgate.measure.workload import WorkloadError
    from perfgate.report.terminal import load_table

    url = args.url or args.base_url
    if not url:
        raise CliError("give the server's URL (positional, or --base-url)")
    scenarios = _scenarios(args)
    target = _target(args, url.rstrip("/"))
    with refusing(WorkloadError, first_line=True):  # e.g. nothing can count prompt tokens: one line, the cause named
        results = _run_points(target, scenarios, args.name, Path(args.out))
    for result in results:
        path = result_path(Path(args.out), result.test_id, result.trial)
        print(load_table(result, percentiles=args.metric_percentiles))
        if result.server_metrics_note and result.server_metrics_note.startswith("the before and after"):
            print(f"perfgate load: {result.server_metrics_note}", file=sys.stderr)
        print(path)
        if args.format == "vllm":
            print(_write_vllm_format(args, result, path, several=len(results) > 1))
    _record(args.history, results)
    return 0 if all(r.status == "ok" for r in results) else 1


def _record(option: str | None, results: list) -> None:
    """Each test id's trials as one run in the history store (``--history``, else $PERFGATE_HISTORY, else the
    cache's file; ``off``: none). Nothing is judged here; a store that cannot be used is one line on stderr."""
    from perfgate.schema.verdict import case_status
    from perfgate.session.history import SessionHistory, history_url

    history = SessionHistory(history_url(option))
    try:
        for test_id in dict.fromkeys(r.test_id for r in results):
            mine = [r for r in results if r.test_id == test_id]
            status = case_status(error=None, trial_statuses=[r.status for r in mine], judgement=None)
            rec = history.record(mine, status, test_id, mine[0].environment.engine.spec
                                 or mine[0].environment.engine.name, mine[0].environment.model)
            if rec is not None:
                print(f"history: recorded as run {rec.run_id} of series #{rec.series_id}")
    finally:
        history.close()
    if history.error:
        print(f"history: {history.error}", file=sys.stderr)


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


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--history", default=None, metavar="URL",
                   help="record the run in this history store (default: $PERFGATE_HISTORY, else the perfgate "
                        "cache's history.sqlite; 'off': none)")
    p.add_argument("--auth-env", default=None, metavar="VAR",
                   help="environment variable holding the endpoint's token (default: $PERFGATE_ENDPOINT_TOKEN if set)")
    p.add_argument("--format", choices=["perfgate", "vllm"], default="perfgate",
                   help="vllm: also write vllm bench serve's result JSON (keys mean_ttft_ms, p99_itl_ms, ...)")
    p.add_argument("--result-filename", default=None, help="with --format vllm: where to write it")
    p.add_argument("--metric-percentiles", type=_percentiles, default=(99.0,), help="e.g. 50,90,99 (default 99)")
    p.add_argument("--workers", type=int, default=None, help="load client processes (default 1)")
    p.add_argument("--no-uvloop", action="store_true", help="run the client on asyncio's own event loop")
    p.add_argument("--http-client", choices=["raw", "aiohttp"], default=None, help="the client's HTTP path (default raw)")
    p.add_argument("--server-url", default=None, metavar="URL",
                   help="base of the server routes (/metrics, /tokenize, /version) when not the URL's (an ingress)")
    p.add_argument("--preset", choices=["kserve"], default=None,
                   help="kserve: OpenAI routes under URL/openai/v1/..., server routes at URL")
    p.add_argument("--header", action="append", default=None, metavar="'NAME: VALUE'",
                   help="an extra header on every request, e.g. 'Host: model.example.com' (repeatable)")
    p.add_argument("--throttle", choices=["count", "retry", "fail"], default="count",
                   help="what a 429/503 does: count it as the throttled rate (default), retry it with backoff "
                        "(3 at most, Retry-After honoured), or fail the trial")
    p.set_defaults(func=_load)
