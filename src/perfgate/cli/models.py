"""``perfgate models fetch ID...``: hub models into the local HF cache, before a run that must not download.

Named ids, or every hub model a matrix's runs name (``--matrix``; tiny
recipes are built, not fetched). A gated model needs HF_TOKEN from the
environment; the token never appears in a line. Exit 1 when a fetch failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perfgate.cli.errors import CliError, refusing


def _models_fetch(args: argparse.Namespace) -> int:
    from perfgate.engines.hfcache import fetch

    models = list(args.models)
    revisions: dict[str, str | None] = {}
    if args.matrix:  # every hub model the matrix's runs (of this hardware class) name; tiny recipes are built, not fetched
        from perfgate.config.matrix import MatrixError, load_matrix

        with refusing(MatrixError):
            cases = load_matrix(Path(args.matrix))
        for case in cases:
            path = case.model.path
            if (args.hardware in (None, case.hardware)) and path and not Path(path).expanduser().exists() \
                    and path not in models:
                models.append(path)
                revisions[path] = case.model.revision
                if case.model.revision is None and case.hardware == "gpu":
                    print(f"perfgate: warning: model {case.model.name!r} ({path}) has no pinned `revision:` in the "
                          "matrix: fetching the hub's moving main, and a new upstream commit changes "
                          "model_revision (docs/statistics.md)", file=sys.stderr)
    if not models:
        raise CliError("no model to fetch: name hub ids or give --matrix")
    worst = 0
    for repo_id in models:  # one failed fetch does not stop the others: its line, then exit 1
        try:
            print(fetch(repo_id, Path(args.cache_dir) if args.cache_dir else None, revisions.get(repo_id)))
        except RuntimeError as exc:
            print(f"perfgate: {exc}", file=sys.stderr)
            worst = 1
    return worst


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="models in the local Hugging Face cache")
    msub = p.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("fetch", help="download hub models into the local cache (needs hub access; gated: HF_TOKEN)")
    p.add_argument("models", nargs="*", help="hub ids, e.g. Qwen/Qwen2.5-0.5B-Instruct")
    p.add_argument("--matrix", default=None, help="also every hub model this matrix's runs name")
    p.add_argument("-m", "--hardware", choices=["cpu", "gpu"], default=None, help="with --matrix: only runs of this class")
    p.add_argument("--cache-dir", default=None, help="HF cache (default: HF_HUB_CACHE / HF_HOME)")
    p.set_defaults(func=_models_fetch)
