"""``perfgate sim``: the reference engine, with its own options (``perfgate sim --help``; docs/sim.md)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    # Listed for --help only: main() hands `perfgate sim ...` to the sim before parsing (it parses its own options).
    sub.add_parser("sim", help="run the reference engine (options: perfgate sim --help)")


def run(argv: list[str]) -> int:
    from perfgate.sim import main

    return main(argv) or 0
