"""What a live A/B's blocks are made of, from its result files: time, noise, transients, covariates, verdicts.

Reads the trial files of one long fixed-block comparison (``benchmarks/live_ab.py --comparisons 1
--fixed-blocks 120`` keeps them; the path is its last line) and prints:

1. **Where a block's time goes**: per trial, prompt preparation (/tokenize), warm-up (and the /metrics scrape
   before the window), the window, the work after it (scrape, parsing, summary), and the gap to the next trial
   (the file write, pausing one side and resuming the other); the windows' share of the span.
2. **Noise against the gap between windows**: the sd of log(B/A) when A's trial k is paired with B's trial
   k + j (j = 0 is the block itself; windows j blocks apart) - how fast drift grows with distance.
3. **Noise against the trial length**: the primary metric recomputed on each trial's first n requests
   (:func:`perfgate.measure.metrics.summarize`, the suite's own code), the block sd at each n, and the
   variance x block time (smaller is better: the trial length that buys the most certainty per minute).
4. **Common-mode against engine-specific variance**: of each side's log values across blocks, the share that
   both sides move together (covariance / variance) - drift the pairing removes.
5. **The resume transient**: per-token gaps of the warm-up requests (the first tokens after a side resumed)
   against the window's median gap, by time since the trial began, per side and engine version; and the
   window's first second against the rest of it.
6. **Covariates**: the Pearson correlation of the per-block log ratio with the block's B - A difference in
   other processes' CPU on the engine's and the client's cores, steal, CPU pressure, the engine's own CPU,
   and the client's CPU; a covariate the change cannot move and that correlates would be a CUPED candidate.
7. With ``--score``: the shipped sequential plan applied to sliding windows of the time budget
   (``--budget``, default 600 s: the budget's worth of blocks from each start), counted as regression /
   no change / improvement / inconclusive, with the blocks each took; and the standardized estimates'
   calibration (estimate / s.e. of the primary metric over disjoint windows: sd ~ 1 for an A/A).

    .venv/bin/python benchmarks/ab_noise.py DIR [--score] [--budget 600] [--metric itl_per_token_ms.p50]

Prints figures; asserts nothing (figures and commands: docs/statistics.md).
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import Counter
from pathlib import Path

import numpy as np

from perfgate.schema.result import Result, read_result

ROOT = Path(__file__).resolve().parents[1]


def load(directory: Path) -> tuple[list[Result], list[Result]]:
    """(A trials, B trials) by trial number, from ``DIR`` (or its ``results/``): ``*.reference`` is A."""
    a: dict[int, Result] = {}
    b: dict[int, Result] = {}
    for f in sorted(directory.rglob("*.trial*.json")):
        try:
            r = read_result(f)
        except Exception:
            continue
        (a if r.test_id.endswith(".reference") else b)[r.trial] = r
    trials = sorted(set(a) & set(b))
    kept = [t for t in trials if not any(_dropped(r) for r in (a[t], b[t]))]
    if len(kept) < len(trials):
        print(f"({len(trials) - len(kept)} block(s) the A/B dropped - client-bound or disturbed - left out)")
    return [a[t] for t in kept], [b[t] for t in kept]


def _dropped(r: Result) -> bool:
    """The live A/B's own rule (perfgate.session.live_ab.why_dropped) at the default bound."""
    from perfgate.schema.result import DISTURBANCE_BOUND
    from perfgate.session.live_ab import why_dropped

    return why_dropped([r], DISTURBANCE_BOUND) is not None


def _metric(r: Result, metric: str) -> float | None:
    v = r.summary.metrics.get(metric) if r.summary else None
    return float(v) if isinstance(v, int | float) and v > 0 else None


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def time_breakdown(a: list[Result], b: list[Result]) -> None:
    trials = sorted([*a, *b], key=lambda r: r.clock_origin_s or 0.0)
    trials = [r for r in trials if r.phases is not None and r.summary is not None and r.clock_origin_s is not None]
    if len(trials) < 2:
        print("1. time: no phases recorded (result files from before perfgate recorded them)")
        return
    parts: dict[str, list[float]] = {"prepare (prompts, /tokenize)": [], "warm-up (+ /metrics scrape)": [],
                                     "window": [], "after the window": [], "between trials (write, pause/resume)": []}
    for r, nxt in zip(trials, [*trials[1:], None]):
        p = r.phases
        parts["prepare (prompts, /tokenize)"].append(p.prepare_s)
        parts["warm-up (+ /metrics scrape)"].append(p.warmup_s)
        parts["window"].append(r.summary.duration_s)
        parts["after the window"].append(p.after_s)
        if nxt is not None and nxt.phases is not None:
            end = r.clock_origin_s + r.summary.duration_s + p.after_s
            parts["between trials (write, pause/resume)"].append(max(0.0, nxt.phases.began_s - end))
    span = (trials[-1].clock_origin_s + trials[-1].summary.duration_s) - trials[0].phases.began_s
    total = sum(sum(v) for v in parts.values())
    print(f"1. time: {len(trials)} trials ({len(trials) // 2} blocks) in {span:.0f} s "
          f"({span / max(len(trials) // 2, 1):.2f} s a block); per trial:")
    for name, v in parts.items():
        if v:
            print(f"   {name:38s} mean {statistics.fmean(v):6.3f} s  p95 {np.percentile(v, 95):6.3f} s  "
                  f"{_pct(sum(v) / total)} of the time")
    print(f"   windows: {_pct(sum(parts['window']) / span)} of the span")


def _ratios(a: list[Result], b: list[Result], metric: str, shift: int = 0) -> np.ndarray:
    out = []
    for k in range(len(a) - shift):
        x, y = _metric(a[k], metric), _metric(b[k + shift], metric)
        if x and y:
            out.append(math.log(y / x))
    return np.array(out)


def _rsd(d: np.ndarray) -> float:
    """A robust sd: 1.4826 MAD (a wild block does not set the figure)."""
    return float(1.4826 * np.median(np.abs(d - np.median(d)))) if len(d) else float("nan")


def gap_noise(a: list[Result], b: list[Result], metric: str) -> None:
    print(f"2. noise against the gap between the paired windows ({metric}; A trial k with B trial k + j):")
    block_s = _block_s(a, b)
    for j in (0, 1, 2, 4, 8, 16):
        d = _ratios(a, b, metric, j)
        if len(d) >= 8:
            gap = f"~{j * block_s:.0f} s apart" if j else "same block"
            print(f"   j={j:2d} ({gap:14s}) n={len(d):3d}  sd {d.std(ddof=1):.3f}  robust sd {_rsd(d):.3f}")


def _block_s(a: list[Result], b: list[Result]) -> float:
    starts = sorted(r.clock_origin_s for r in a if r.clock_origin_s is not None)
    return float(np.median(np.diff(starts))) if len(starts) > 1 else float("nan")


def _sub_metric(r: Result, n: int, metric: str) -> float | None:
    from perfgate.measure.metrics import summarize

    reqs = sorted((q for q in r.requests if q.error is None), key=lambda q: q.sent_at_s)[:n]
    if len(reqs) < n:
        return None
    end = max(q.sent_at_s + (q.e2e_ms or 0.0) / 1000 for q in reqs)
    v = summarize(reqs, max(end, 1e-3)).metrics.get(metric)
    return float(v) if isinstance(v, int | float) and v > 0 else None


def length_noise(a: list[Result], b: list[Result], metric: str) -> None:
    full = max((len(r.requests) for r in a), default=0)
    if not full:
        return
    per_request = statistics.fmean(r.summary.duration_s / max(len(r.requests), 1) for r in a if r.summary)
    overhead = statistics.fmean(
        (r.phases.prepare_s + r.phases.warmup_s + r.phases.after_s) for r in a if r.phases) if a[0].phases else 1.0
    print(f"3. noise against the trial length ({metric}, each trial's first n requests; block time = 2 x "
          f"(n x {per_request:.3f} s + {overhead:.2f} s outside the window)):")
    for n in sorted({max(2, full // 4), max(2, full // 2), max(2, 3 * full // 4), full}):
        d = np.array([math.log(y / x) for x, y in ((_sub_metric(p, n, metric), _sub_metric(q, n, metric))
                                                   for p, q in zip(a, b)) if x and y])
        if len(d) < 8:
            continue
        block = 2 * (n * per_request + overhead)
        sd = _rsd(d)
        print(f"   n={n:3d}  block ~{block:5.2f} s  robust sd {sd:.3f}  variance x block time {sd * sd * block:.4f}")


def common_mode(a: list[Result], b: list[Result], metric: str) -> None:
    rows = [(_metric(x, metric), _metric(y, metric)) for x, y in zip(a, b)]
    la = np.log([x for x, y in rows if x and y])
    lb = np.log([y for x, y in rows if x and y])
    if len(la) < 8:
        return
    cov = float(np.cov(la, lb)[0, 1])
    va, vb = float(la.var(ddof=1)), float(lb.var(ddof=1))
    print(f"4. common mode ({metric}): sd of log A {math.sqrt(va):.3f}, of log B {math.sqrt(vb):.3f}; "
          f"shared (covariance / mean variance) {cov / ((va + vb) / 2):.0%}; sd of the paired log ratio "
          f"{(lb - la).std(ddof=1):.3f} (unpaired it would be {math.sqrt(va + vb):.3f})")


def transient(a: list[Result], b: list[Result]) -> None:
    print("5. resume transient: warm-up token gaps / the window's median gap, by time since the trial began:")
    edges = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    for side, trials in (("A", a), ("B", b)):
        versions = Counter(r.environment.engine.version for r in trials)
        rel: dict[int, list[float]] = {i: [] for i in range(len(edges) - 1)}
        head, tail = [], []
        for r in trials:
            steady = [g for q in r.requests for g in q.itl_ms if g > 0]
            if not steady or r.phases is None or r.clock_origin_s is None:
                continue
            med = statistics.median(steady)
            since_window = r.clock_origin_s - r.phases.began_s  # seconds from the trial's start to its window
            for q in r.warmup:
                t = since_window + q.sent_at_s + (q.ttft_ms or 0.0) / 1000
                for g in q.itl_ms:
                    t += g / 1000
                    i = next((i for i in range(len(edges) - 1) if edges[i] <= t < edges[i + 1]), None)
                    if i is not None and g > 0:
                        rel[i].append(g / med)
            for q in r.requests:
                t = q.sent_at_s + (q.ttft_ms or 0.0) / 1000
                for g in q.itl_ms:
                    t += g / 1000
                    (head if t < 1.0 else tail).append(g)
        cells = [f"{edges[i]:g}-{edges[i + 1]:g} s: {statistics.median(v):.2f} (n={len(v)})"
                 for i, v in rel.items() if len(v) >= 10]
        print(f"   {side} (engine {', '.join(str(v) for v in versions)}): " + ("; ".join(cells) or "no warm-up gaps"))
        if head and tail:
            print(f"      window's first second vs the rest: median gap {statistics.median(head):.2f} ms vs "
                  f"{statistics.median(tail):.2f} ms ({statistics.median(head) / statistics.median(tail) - 1:+.1%})")


COVARIATES = {
    "others' CPU, engine cores": lambda r: r.contention and r.contention.foreign_engine_cores,
    "others' CPU, client cores": lambda r: r.contention and r.contention.foreign_client_cores,
    "steal, engine cores": lambda r: r.contention and r.contention.steal_engine_cores,
    "CPU pressure (some)": lambda r: r.contention and r.contention.pressure_cpu_some,
    "engine CPU (cores)": lambda r: r.contention and r.contention.engine_cpu,
    "client CPU (cores)": lambda r: r.contention and r.contention.client_cpu,
    "client loop lag p99": lambda r: r.client_health and r.client_health.loop_lag_ms_p99,
}


def covariates(a: list[Result], b: list[Result], metric: str) -> None:
    from scipy import stats

    print(f"6. covariates: Pearson r of the block's log({metric} B/A) with its B - A difference:")
    for name, get in COVARIATES.items():
        rows = [(math.log(_metric(y, metric) / _metric(x, metric)), get(y) - get(x))
                for x, y in zip(a, b)
                if _metric(x, metric) and _metric(y, metric) and get(x) is not None and get(y) is not None]
        if len(rows) < 8:
            print(f"   {name:28s} not recorded")
            continue
        d, c = np.array(rows).T
        if np.ptp(c) == 0:
            print(f"   {name:28s} constant")
            continue
        r, p = stats.pearsonr(d, c)
        values = [get(x) for x in [*a, *b] if get(x) is not None]
        print(f"   {name:28s} r {r:+.2f} (p {p:.2f}); its values: median {statistics.median(values):.3f}, "
              f"p99 {np.percentile(values, 99):.3f}, max {max(values):.3f}")


def score(a: list[Result], b: list[Result], scenario_name: str, budget_s: float, metric: str) -> None:
    """The shipped plan on sliding windows: from each start, blocks until it stops or the budget is spent."""
    from perfgate.config.matrix import load_matrix
    from perfgate.judge.robust import location_scalar
    from perfgate.judge.sequential import judge_live
    from perfgate.judge.verdict import JudgePolicy
    from perfgate.schema.verdict import BaselineRef
    from perfgate.session.live_ab import plan_for

    case = next(c for c in load_matrix(ROOT / "perf" / "matrix.yaml") if c.scenario.name == scenario_name)
    spec = case.scenario.spec
    plan = plan_for(spec)
    policy = JudgePolicy(min_effect=spec.policy.min_effect, observe_only=tuple(spec.policy.observe_only))
    block_s = _block_s(a, b)
    budget_blocks = int(budget_s // block_s) if math.isfinite(block_s) else plan.max_blocks
    ma, mb = [r.summary.metrics for r in a], [r.summary.metrics for r in b]
    outcomes: Counter[str] = Counter()
    took: list[int] = []
    censored = 0  # windows whose data ended before the plan stopped or its budget was spent
    ref = BaselineRef(live_engine="A")
    window = min(budget_blocks, plan.max_blocks)
    starts = range(0, max(1, len(a) - plan.min_blocks + 1), 2)  # even starts: each window begins A B
    for s in starts:
        end = min(len(a), s + window)
        for k in range(s + 2, end + 1):
            final = k == s + window  # the budget (or max_blocks) is spent: the last look
            j, stop = judge_live(ma[s:k], mb[s:k], policy, plan, context="score", reference=ref, final=final,
                                 scenario=scenario_name)
            if stop:
                outcomes[j.outcome or "inconclusive"] += 1
                took.append(k - s)
                break
        else:
            censored += 1
    n = sum(outcomes.values())
    if not n:
        print(f"7. the shipped plan: every window ran out of blocks before it stopped ({censored} windows of up to "
              f"{window} blocks; the run has {len(a)})")
        return
    print(f"7. the shipped plan ({plan.min_blocks}..{plan.max_blocks} blocks, look every {plan.look_every}, alpha "
          f"{plan.alpha:g}) on {n} sliding windows of a {budget_s:.0f} s budget ({budget_blocks} blocks of "
          f"{block_s:.1f} s; windows overlap, so these are not independent trials):")
    print("   " + ", ".join(f"{k} {v} ({v / n:.0%})" for k, v in sorted(outcomes.items()))
          + f"; blocks to stop: median {statistics.median(took):.0f}, max {max(took)}"
          + (f"; {censored} later windows ran out of blocks before the plan stopped (left out)" if censored else ""))
    d = _ratios(a, b, metric)
    full = location_scalar(d, plan.estimator, min_correlation=plan.block_correlation)
    print(f"   all {len(d)} blocks: {metric} {math.expm1(full[0]):+.1%} ± {1.96 * full[1] * 100:.1f}% (95%)")
    for w in (12, 24, 36):
        z = [location_scalar(d[i:i + w], plan.estimator, min_correlation=plan.block_correlation)
             for i in range(0, len(d) - w + 1, w)]
        zs = [(est - full[0]) / se for est, se, _ in z if se > 0]
        if len(zs) >= 3:
            print(f"   calibration, {len(zs)} disjoint windows of {w} blocks: sd of (estimate - overall) / s.e. "
                  f"{np.std(zs, ddof=1):.2f} (1 = calibrated; below 1 the s.e. is conservative)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("directory", type=Path)
    ap.add_argument("--metric", default="itl_per_token_ms.p50")
    ap.add_argument("--scenario", default="cpu-short-prompt-long-output")
    ap.add_argument("--score", action="store_true")
    ap.add_argument("--budget", type=float, default=600.0)
    args = ap.parse_args()
    a, b = load(args.directory)
    if len(a) < 8:
        print(f"{args.directory}: {len(a)} paired trials; need at least 8")
        return 2
    print(f"{args.directory}: {len(a)} blocks, A = {a[0].environment.engine.version} {a[0].environment.model}, "
          f"B = {b[0].environment.engine.version} {b[0].environment.model}")
    time_breakdown(a, b)
    gap_noise(a, b, args.metric)
    length_noise(a, b, args.metric)
    common_mode(a, b, args.metric)
    transient(a, b)
    covariates(a, b, args.metric)
    if args.score:
        score(a, b, args.scenario, args.budget, args.metric)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
