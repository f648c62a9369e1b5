"""``perfgate compare A B``: a live A/B outside pytest, both sides booted (or reached) here, judged sequentially.

A and B are matrix engines or URLs of running endpoints. GPU sides pass the
same preflight as in the suite before anything is installed or booted. Exit 1
when a comparison fails its gate, 0 otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from perfgate.cli.errors import CliError, refusing


def _engine_or_url(name: str, engines: dict) -> object:
    from perfgate.config.matrix import EngineConfig

    if name.startswith(("http://", "https://")):
        return EngineConfig(id=name, kind="external", base_url=name.rstrip("/"))
    if name not in engines:
        from perfgate._suggest import did_you_mean

        raise CliError(f"{name!r} is neither a URL nor an engine of the matrix{did_you_mean(name, engines, 'defined')}")
    return engines[name]


def _candidate_or_b(args: argparse.Namespace, engines: dict) -> object:
    """B: a matrix engine or URL, or with --candidate-spec the engine derived from B's entry (A's when B is
    not given) with that spec (engines/candidate.py)."""
    if not args.candidate_spec:
        if args.b is None:
            raise CliError("give B (a matrix engine or URL) or --candidate-spec SPEC")
        return _engine_or_url(args.b, engines)
    from perfgate.engines.candidate import CandidateError, parse_candidate

    with refusing(CandidateError, prefix="--candidate-spec: "):
        return parse_candidate(f"{args.b or args.a}={args.candidate_spec}", engines)


def _preflight_stops(sides: list, hardware: str, cache_dir: Path) -> str | None:
    """The first blocking preflight line for GPU engines about to be installed and booted (None: go ahead)."""
    from perfgate.engines.preflight import GpuFacts, case_findings, needs_gpu

    sides = [s for s in sides if needs_gpu(s[0], hardware)]
    if not sides:
        return None
    facts = GpuFacts.probe()
    try:
        findings = case_findings(sides, facts, cache_dir, hardware=hardware)
    finally:
        facts.close()
    return next((f.line() for f in findings if f.severity == "block"), None)


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
    from perfgate.session.history import history_url

    with refusing(MatrixError, ValueError):
        engines = load_engines(Path(args.matrix))
        a = _engine_or_url(args.a, engines)
        b = _candidate_or_b(args, engines)
        if args.scenario.endswith((".yaml", ".yml")):
            scenarios = load_scenario_file(Path(args.scenario))
        else:
            cases = load_matrix(Path(args.matrix))
            scenarios = list({c.scenario.name: c.scenario for c in cases if c.scenario.family == args.scenario
                              or c.scenario.name == args.scenario}.values())
            if not scenarios:
                raise CliError(f"no scenario {args.scenario!r} in the matrix's scenarios")
        models = load_models(Path(args.matrix))
        model = models.get(args.model) or ModelSpec(args.model, None, args.model)
        model_a = (models.get(args.model_a) or ModelSpec(args.model_a, None, args.model_a)) if args.model_a else None
        machine = machine_name(args.machine)
    cache_dir = Path(args.cache) if args.cache else default_cache_dir()
    stop = _preflight_stops([(a, model_a or model), (b, model)], args.hardware, cache_dir)
    if stop:
        raise CliError(stop)
    if args.endpoint_auth_env:
        from perfgate.engines.endpoint import EndpointError, endpoint_auth

        with refusing(EndpointError, prefix="--endpoint-auth-env: "):
            endpoint_auth(args.endpoint_auth_env)
    session = PerfSession(Settings(
        results_dir=Path(args.out), cache_dir=cache_dir,
        baselines_dir=Path("baselines"), machine=machine, compare_to=a, compare_model=model_a,
        time_budget_s=args.time_budget,
        boots_per_side=args.boots_per_side, trials=None,
        endpoint_model=args.endpoint_model, endpoint_auth_env=args.endpoint_auth_env,
        history=history_url(args.history)))
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
    summary = session.summary_lines()  # the cases were printed above: from the counts line on
    for ln in summary[next((i for i, ln in enumerate(summary) if " cases on machine " in ln), 0):]:
        print(ln)
    return worst


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="live A/B: is B slower than A? (matrix engine ids or endpoint URLs)")
    p.add_argument("a", help="reference: a matrix engine id or the URL of a running endpoint")
    p.add_argument("b", nargs="?", default=None,
                   help="candidate: a matrix engine id or the URL of a running endpoint (optional with --candidate-spec)")
    p.add_argument("--candidate-spec", default=None, metavar="SPEC",
                   help="B derived from B's (else A's) matrix entry with this install source: vllm==0.33.0, a wheel, "
                        "optionally '--extra-index-url URL' (docs/engines.md)")
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
    p.add_argument("--history", default=None, metavar="URL",
                   help="record both sides in this history store (default: $PERFGATE_HISTORY, else the perfgate "
                        "cache's history.sqlite; 'off': none)")
    p.add_argument("--endpoint-model", default=None, metavar="NAME",
                   help="model name the endpoint(s) serve (default: the matrix model's HF id or key if listed, "
                        "else the endpoint's only model)")
    p.add_argument("--endpoint-auth-env", default=None, metavar="VAR",
                   help="environment variable holding the endpoints' token (default: $PERFGATE_ENDPOINT_TOKEN if set)")
    p.set_defaults(func=_compare)
