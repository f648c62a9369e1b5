"""``perfgate preflight``: what would stop the selected cases' engines from booting here, with nothing installed.

The selection is the suite's (``pytest perf``'s ``--perf-engine``, ``--perf-model``,
``--perf-scenario``, ``--perf-compare-to``, ``--perf-candidate``, under the same
names without ``perf-``), so a workflow checks exactly what its shard or its
A/B pair will boot: a shard of vLLM cases is not stopped by SGLang's CUDA need or
by a model only another shard serves. A live A/B's pair is checked as the suite
checks it: both sides, and whether they fit on shared GPUs. One line per finding
(engines/preflight.py); exit 1 when any finding blocks, 0 otherwise (warnings
included).
"""

from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

from perfgate.cli.errors import CliError, refusing


def _keep(value: str, patterns: list[str]) -> bool:
    return not patterns or any(fnmatch.fnmatch(value, p) for p in patterns)


def selected_sides(args: argparse.Namespace) -> list[tuple]:
    """The distinct (sides, hardware) the selected cases boot, as the suite selects them: optional runs only
    when --engine names them; under --compare-to the reference's own cases drop out (unless --engine names
    it: an A/A) and saturation scenarios are left out (the suite's live A/B does not run them); a case of a
    live A/B is two sides, reference first."""
    from perfgate.config.matrix import load_engines, load_matrix
    from perfgate.engines.candidate import parse_candidate, with_candidate

    cases = load_matrix(Path(args.matrix))
    engines = list(args.engine)
    if args.candidate:
        candidate = parse_candidate(args.candidate, load_engines(Path(args.matrix)))
        cases = with_candidate(cases, args.candidate.partition("=")[0], candidate)
        engines.append(candidate.id)
    reference = None
    if args.compare_to:
        known = load_engines(Path(args.matrix))
        if args.compare_to not in known:
            from perfgate._suggest import did_you_mean

            raise CliError(f"--compare-to {args.compare_to!r} is not an engine of the matrix"
                           f"{did_you_mean(args.compare_to, known, 'defined')}")
        reference = known[args.compare_to]
    out: dict[tuple, None] = {}
    for c in cases:
        if args.hardware and c.hardware != args.hardware:
            continue
        if c.optional and not (engines and _keep(c.engine.id, engines)):
            continue
        if reference is not None and (c.engine.id == reference.id and not engines
                                      or c.scenario.spec.saturation is not None):
            continue
        if not (_keep(c.engine.id, engines) and _keep(c.model.name, args.model)
                and (_keep(c.scenario.name, args.scenario) or _keep(c.scenario.family, args.scenario))):
            continue
        sides = ((reference, c.model),) if reference is not None else ()
        out[((*sides, (c.engine, c.model)), c.hardware)] = None
    return list(out)


def _preflight(args: argparse.Namespace) -> int:
    """One line per finding; exit 1 when any finding blocks, 0 otherwise (warnings included)."""
    from perfgate.config.matrix import MatrixError
    from perfgate.engines.candidate import CandidateError
    from perfgate.engines.preflight import GpuFacts, case_findings, check_python, needs_gpu, worst
    from perfgate.engines.provision import default_cache_dir

    with refusing(MatrixError, CandidateError):
        selected = selected_sides(args)
    if not selected:
        raise CliError("no matrix case matches the selection" + (
            " (a live A/B leaves saturation scenarios out: run them on each engine alone)" if args.compare_to else ""))
    cache = Path(args.cache) if args.cache else default_cache_dir()
    gpu = any(needs_gpu(e, hw) for sides, hw in selected for e, _ in sides)
    facts = GpuFacts.probe() if gpu else GpuFacts(None, "not probed")
    findings = [check_python()]
    memo: dict[tuple, list] = {}
    try:
        for sides, hardware in selected:
            for f in case_findings(list(sides), facts, cache, hardware=hardware, memo=memo):
                if f not in findings:
                    findings.append(f)
    finally:
        facts.close()
    for f in findings:
        print(f.line())
    verdict = worst(findings)
    print(f"preflight: {verdict} ({sum(f.severity == 'block' for f in findings)} blocking, "
          f"{sum(f.severity == 'warn' for f in findings)} warnings) for {len(selected)} engine x model pair(s)")
    return 1 if verdict == "block" else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preflight", help="check this machine for the selected cases' engines before installing "
                                         "or booting (the suite's selection options)")
    p.add_argument("--matrix", default="perf/matrix.yaml")
    p.add_argument("-m", "--hardware", choices=["cpu", "gpu"], default=None, help="only runs of this hardware class")
    p.add_argument("--engine", action="append", default=[], help="only engine configs matching this glob")
    p.add_argument("--model", action="append", default=[], help="only models matching this glob")
    p.add_argument("--scenario", action="append", default=[],
                   help="only scenarios (name or family) matching this glob, as --perf-scenario")
    p.add_argument("--compare-to", default=None, metavar="ENGINE",
                   help="a live A/B against this matrix engine, as --perf-compare-to: both sides are checked")
    p.add_argument("--candidate", default=None, metavar="ENGINE=SPEC",
                   help="a candidate derived from matrix engine ENGINE, as --perf-candidate")
    p.add_argument("--cache", default=None, help="engine venv cache (default: ~/.cache/perfgate)")
    p.set_defaults(func=_preflight)
