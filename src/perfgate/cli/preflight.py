"""``perfgate preflight``: what would stop the matrix's engines from booting here, with nothing installed.

One line per finding (engines/preflight.py); exit 1 when any finding blocks,
0 otherwise (warnings included).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from perfgate.cli.errors import CliError, refusing


def _preflight(args: argparse.Namespace) -> int:
    """One line per finding; exit 1 when any finding blocks, 0 otherwise (warnings included)."""
    import fnmatch

    from perfgate.config.matrix import MatrixError, load_matrix
    from perfgate.engines.preflight import run_preflight, worst
    from perfgate.engines.provision import default_cache_dir

    with refusing(MatrixError):
        cases = load_matrix(Path(args.matrix))
    pairs = [(c.engine, c.model, c.hardware) for c in cases
             if (not args.hardware or c.hardware == args.hardware)
             and (not args.engine or any(fnmatch.fnmatch(c.engine.id, p) for p in args.engine))
             and (not args.model or any(fnmatch.fnmatch(c.model.name, p) for p in args.model))
             and (not c.optional or args.engine)]
    if not pairs:
        raise CliError("no matrix case matches the selection")
    findings = run_preflight(pairs, Path(args.cache) if args.cache else default_cache_dir())
    for f in findings:
        print(f.line())
    verdict = worst(findings)
    print(f"preflight: {verdict} ({sum(f.severity == 'block' for f in findings)} blocking, "
          f"{sum(f.severity == 'warn' for f in findings)} warnings)")
    return 1 if verdict == "block" else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preflight", help="check this machine for the matrix's engines before installing or booting")
    p.add_argument("--matrix", default="perf/matrix.yaml")
    p.add_argument("-m", "--hardware", choices=["cpu", "gpu"], default=None, help="only runs of this hardware class")
    p.add_argument("--engine", action="append", default=[], help="only engine configs matching this glob")
    p.add_argument("--model", action="append", default=[], help="only models matching this glob")
    p.add_argument("--cache", default=None, help="engine venv cache (default: ~/.cache/perfgate)")
    p.set_defaults(func=_preflight)
