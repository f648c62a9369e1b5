"""``perfgate report DIR...``: the HTML + Markdown report of result directories, merged."""

from __future__ import annotations

import argparse
from pathlib import Path


def _report(args: argparse.Namespace) -> int:
    from perfgate.report import render_report

    for p in render_report([Path(d) for d in args.results], Path(args.out)):
        print(p)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="render the report from result directories")
    p.add_argument("results", nargs="+", help="result directories (merged)")
    p.add_argument("--out", default="reports", help="output directory (default: reports)")
    p.set_defaults(func=_report)
