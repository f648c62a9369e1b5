"""The ``perfgate`` command: small entry points around the library.

    perfgate sim ...              run the reference engine (see docs/sim.md)
    perfgate provision SPEC       create (or find) the venv of an engine spec
    perfgate model RECIPE [DIR]   build the tiny model of a recipe
    perfgate load URL ...         drive one scenario against a running endpoint
    perfgate report DIR...        render the HTML + Markdown report
    perfgate compare A B ...      live A/B: is B slower than A? (matrix engines or running endpoints)
    perfgate preflight            what would stop the matrix's engines from booting here (nothing installed)
    perfgate models fetch ID...   put hub models into the local HF cache (gated: HF_TOKEN from the environment)
    perfgate history ...          the results history: list, show CASE, export, import DIR..., accept RUN
"""

# One module per subcommand group, each with register(subparsers) adding its parser(s) and their func;
# COMMANDS is the --help order. A new group is one module and one entry here. A command refuses by raising
# CliError (perfgate.cli.errors); main() alone prints it and exits 2.

from __future__ import annotations

import argparse
import sys

from perfgate.cli import compare, history, load, models, preflight, provision, report, sim
from perfgate.cli.errors import EXIT_USAGE, CliError

COMMANDS = (sim, provision, load, report, compare, preflight, models, history)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:  # the simulator parses its own options
        return sim.run(argv[1:])
    parser = argparse.ArgumentParser(prog="perfgate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"perfgate: {exc}", file=sys.stderr)
        return EXIT_USAGE
