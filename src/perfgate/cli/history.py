"""``perfgate history list | show | export | import | accept``: the history store from the command line.

Each command opens the store (``--url``, else ``$PERFGATE_HISTORY``, else the
cache's SQLite file); a store that cannot be used is a refusal (CliError: one
line naming the store and the cause, exit 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perfgate.cli.errors import CliError
from perfgate.history.location import HistoryError, resolve_url


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", help="the results history: list, show, export, import, accept",
                              description="The history store of every run (SQLite in the perfgate cache by default; "
                                          "--url or $PERFGATE_HISTORY for another file or a postgresql:// URL).")
    p.add_argument("--url", default=None, help="the store (default: $PERFGATE_HISTORY, else the cache's SQLite file)")
    sub = p.add_subparsers(dest="history_command", required=True)
    q = sub.add_parser("list", help="the series in the store, with their run counts")
    q.add_argument("--case", default=None, help="only this case id")
    q.set_defaults(func=handle, history_func=_list)
    q = sub.add_parser("show", help="a case's runs, its change points, and what the gate says of its newest run")
    q.add_argument("case", help="case id (test id), or #SERIES for one series")
    q.add_argument("--metric", action="append", default=[], help="metrics to show (default: the key metrics)")
    q.set_defaults(func=handle, history_func=_show)
    q = sub.add_parser("export", help="series as csv (per trial), otava-csv (per run, Otava's input) or json")
    q.add_argument("case", nargs="?", default=None, help="case id or #SERIES (default: every series)")
    q.add_argument("--format", choices=["csv", "otava-csv", "json"], default="csv")
    q.add_argument("--metric", action="append", default=[], help="otava-csv: only these metric columns")
    q.add_argument("--out", default=None, help="file (otava-csv with several series: a directory, one file each)")
    q.set_defaults(func=handle, history_func=_export)
    q = sub.add_parser("import", help="record result directories or nightly artifacts (.zip) written before the store")
    q.add_argument("dirs", nargs="+", type=Path)
    q.set_defaults(func=handle, history_func=_import)
    q = sub.add_parser("accept", help="accept the change that begins at RUN as the new normal (a curated reset)")
    q.add_argument("run", type=int, help="the run id where the change begins (as `history show` prints it)")
    q.add_argument("--metric", default=None, help="only this metric (default: every metric)")
    q.add_argument("--note", default="", help="why, for the record")
    q.set_defaults(func=handle, history_func=_accept)


def handle(args: argparse.Namespace) -> int:
    """Run a parsed ``history`` subcommand in the store it names."""
    from perfgate.history.store import HistoryStore

    try:
        with HistoryStore.open(resolve_url(args.url)) as store:
            return args.history_func(store, args)
    except HistoryError as exc:
        raise CliError(str(exc)) from exc


def _select(store, case: str | None):
    if case and case.startswith("#"):
        return [store.series(int(case[1:]))]
    infos = store.list_series(case)
    if case and not infos:
        raise HistoryError(store.name, f"no series for case {case!r} (perfgate history list)")
    return [store.series(i.id) for i in infos]


def _list(store, args) -> int:
    infos = store.list_series(args.case)
    if not infos:
        print(f"{store.name}: no runs recorded")
    for i in infos:
        print(f"#{i.id:<4} {i.case_id}  machine {i.machine}  {i.n_runs} run(s)  {(i.first or '')[:10]} .. "
              f"{(i.last or '')[:10]}")
    return 0


def _show(store, args) -> int:
    from perfgate.judge.changepoint import HistoryPolicy, change_points, judge_history

    policy = HistoryPolicy()
    metrics = args.metric or ["ttft_ms.p50", "itl_per_token_ms.p50", "e2e_ms.p50", "output_throughput"]
    for s in _select(store, args.case):
        i = s.info
        print(f"#{i.id} {i.case_id} on {i.machine} ({i.engine_entry}, {i.model_entry}, {i.scenario}): "
              f"{len(s.runs)} run(s)")
        cps = [c for c in change_points(s.runs, policy, s.resets) if c.metric in metrics or not args.metric]
        starts = {c.index for c in cps}
        print(f"  {'run':>5}  {'started':<16} {'engine':<12} {'commit':<10} {'status':<14} "
              + " ".join(f"{m:>20}" for m in metrics))
        for n, r in enumerate(s.runs):
            mark = "*" if n in starts else " "
            vals = " ".join(f"{r.values[m]:>20.4g}" if m in r.values else f"{'-':>20}" for m in metrics)
            print(f" {mark}{r.run_id:>5}  {r.started_at[:16]:<16} {str(r.environment.get('engine_version')):<12} "
                  f"{str(r.environment.get('git_commit'))[:10]:<10} {r.status:<14} {vals}")
        for m, run in s.resets.items():
            print(f"  accepted: {m or 'every metric'} from run {run}")
        for c in cps:
            print(f"  change point: {c.one_line()}" + (" (observe only)" if c.observe_only else ""))
        for c in judge_history(s.runs, policy, s.resets):
            print(f"  REGRESSION: {c.one_line()}")
    return 0


def _export(store, args) -> int:
    from perfgate.history import transfer

    series = _select(store, args.case)
    if args.format == "otava-csv":
        if len(series) > 1 and not args.out:
            raise HistoryError(store.name, f"{len(series)} series: name a case or give --out DIR for otava-csv")
        if len(series) > 1:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            for s in series:
                (out / f"series-{s.info.id}.csv").write_text(transfer.to_otava_csv(s, args.metric or None))
            print(f"{len(series)} file(s) in {out}")
            return 0
        text = transfer.to_otava_csv(series[0], args.metric or None) if series else ""
    elif args.format == "json":
        text = transfer.to_json(series)
    else:
        text = transfer.to_csv(store, series)
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _import(store, args) -> int:
    from perfgate.history.transfer import import_dirs

    rep = import_dirs(store, args.dirs)
    for line in rep.unreadable:
        print(f"unreadable: {line}", file=sys.stderr)
    print(f"{rep.recorded} run(s) recorded, {rep.already} already in {store.name}"
          + (f", {len(rep.unreadable)} unreadable file(s)" if rep.unreadable else ""))
    return 1 if rep.unreadable else 0


def _accept(store, args) -> int:
    new = store.accept(args.run, args.metric, args.note)
    what = args.metric or "every metric"
    print(f"accepted: {what} from run {args.run}" + ("" if new else " (already accepted)"))
    return 0
