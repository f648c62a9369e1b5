"""False-positive and detection rates of perfgate's verdicts, by simulation.

Each simulated case judges the gating metrics of ``perfgate.judge.stats.KEY_METRICS``
(TTFT p50/mean, ITL p50, TPOT mean, e2e p50, output/request throughput) with
the library's own arithmetic (``perfgate.judge.stats.compare_batch``: log-Welch
interval, Holm over the gating metrics, the two gates) and then, as the
pytest plugin does, re-runs a suspected regression with as many trials again
and re-judges on all of them before counting it.

Noise model: per trial, each metric family (TTFT; ITL, which also stands for
TPOT and e2e; throughput) gets one lognormal draw with the coefficient of
variation given on the command line; metrics of a family move together
(correlation 1, which is the conservative case for Holm's power). A slowdown
of s multiplies latencies by 1 + s and divides throughputs by 1 + s in every
family at once. error_rate and the observe-only p99s do not take part.

    .venv/bin/python benchmarks/stat_power.py [--cv-ttft 0.03] [--cv-itl 0.02] [--cv-throughput 0.02]
        [--trials 3] [--baseline-trials N] [--alpha A] [--min-effect E] [--no-confirm]
        [--calibrate baselines/.../scenario.json] [--reps 20000] [--seed 0]

Prints a table and, when the targets (false positives <= 1% per metric,
detection >= 95% at a 10% slowdown) are not met, the trial count that would
meet them. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from perfgate.judge.stats import DEFAULT_ALPHA, KEY_METRICS, compare_batch, policy_for

FAMILIES = ("TTFT", "ITL", "throughput")
REPRESENTATIVE = {"TTFT": "ttft_ms.p50", "ITL": "itl_per_token_ms.p50", "throughput": "output_throughput"}
FP_TARGET, DETECT_TARGET, DETECT_AT = 0.01, 0.95, 0.10
SLOWDOWNS = (0.05, 0.10, 0.20)


def family_of(metric: str) -> str:
    if metric.startswith("ttft_ms."):
        return "TTFT"
    if metric.startswith(("itl_ms.", "itl_per_token_ms.", "tpot_ms.", "e2e_ms.")):
        return "ITL"
    if "throughput" in metric:
        return "throughput"
    raise ValueError(f"no noise family for {metric}")


def calibrate(path: Path) -> dict[str, float]:
    """Trial-to-trial CV of each family's representative metric in a baseline file."""
    trials = json.loads(path.read_text())["trials"]
    out = {}
    for fam, key in REPRESENTATIVE.items():
        v = np.array([t[key] for t in trials if t.get(key) is not None], dtype=float)
        out[fam] = float(v.std(ddof=1) / v.mean())
    return out


class Sim:
    def __init__(self, cv: dict[str, float], alpha: float, min_effect: float | None, confirm: bool, seed: int):
        overrides = {"*": min_effect} if min_effect is not None else None
        self.metrics = [m for m in KEY_METRICS
                        if not policy_for(m).observe_only and not policy_for(m).absolute]
        self.policies = [policy_for(m, overrides) for m in self.metrics]
        fam = [family_of(m) for m in self.metrics]
        self.fam_index = np.array([FAMILIES.index(f) for f in fam])
        self.sigma = np.array([np.sqrt(np.log1p(cv[f] ** 2)) for f in FAMILIES])
        self.sign = np.array([1.0 if p.direction == "lower" else -1.0 for p in self.policies])
        self.rep_cols = {f: self.metrics.index(REPRESENTATIVE[f]) for f in FAMILIES}
        self.alpha, self.confirm = alpha, confirm
        self.rng = np.random.default_rng(seed)

    def draw(self, reps: int, n: int, slowdown: float) -> np.ndarray:
        """(reps, n, k) trial values: one lognormal draw per family and trial, shared by its metrics."""
        z = self.rng.normal(0.0, 1.0, (reps, n, len(FAMILIES))) * self.sigma
        return np.exp(z[..., self.fam_index] + self.sign * np.log1p(slowdown))

    def run(self, reps: int, n_base: int, n_cur: int, slowdown: float) -> dict[str, float]:
        """Share of cases counted as a regression, per family's representative metric and for the case."""
        base, cur = self.draw(reps, n_base, 0.0), self.draw(reps, n_cur, slowdown)
        reg = compare_batch(base, cur, self.policies, self.alpha) == "regression"
        suspected = reg.any(axis=-1)
        if self.confirm and suspected.any():  # the plugin's confirmation run
            idx = np.flatnonzero(suspected)
            more = self.draw(len(idx), n_cur, slowdown)
            reg2 = compare_batch(base[idx], np.concatenate([cur[idx], more], axis=1), self.policies, self.alpha)
            reg = np.zeros_like(reg)
            reg[idx] = reg2 == "regression"
        out = {f: float(reg[:, c].mean()) for f, c in self.rep_cols.items()}
        out["case"] = float(reg.any(axis=-1).mean())
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cv-ttft", type=float, default=0.03, help="trial-to-trial CV of TTFT metrics (default 0.03)")
    ap.add_argument("--cv-itl", type=float, default=0.02, help="... of ITL/TPOT/e2e metrics (default 0.02)")
    ap.add_argument("--cv-throughput", type=float, default=0.02, help="... of throughputs (default 0.02)")
    ap.add_argument("--calibrate", type=Path, default=None,
                    help="read the three CVs from a baseline file's trials instead")
    ap.add_argument("--trials", type=int, default=3, help="current trials per comparison (default 3)")
    ap.add_argument("--baseline-trials", type=int, default=None, help="baseline trials (default: --trials)")
    ap.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help=f"family-wise alpha (default {DEFAULT_ALPHA})")
    ap.add_argument("--min-effect", type=float, default=None, help="every metric's min_effect (default: policies)")
    ap.add_argument("--no-confirm", action="store_true", help="judge the first trials only (no confirmation run)")
    ap.add_argument("--max-trials", type=int, default=12, help="search limit for the trial count needed")
    ap.add_argument("--reps", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t0 = time.perf_counter()
    cv = (calibrate(a.calibrate) if a.calibrate else
          {"TTFT": a.cv_ttft, "ITL": a.cv_itl, "throughput": a.cv_throughput})
    sim = Sim(cv, a.alpha, a.min_effect, not a.no_confirm, a.seed)
    n_cur = a.trials
    n_base = a.baseline_trials or a.trials
    me = {f: sim.policies[sim.rep_cols[f]].min_effect for f in FAMILIES}

    print(f"log-Welch ratio interval; Holm over {len(sim.metrics)} gating metrics, family alpha {a.alpha:g}; "
          f"min effect {', '.join(f'{f} {v:.0%}' for f, v in me.items())}; "
          + ("confirmation run on" if sim.confirm else "no confirmation run"))
    print(f"trial noise (lognormal CV{' from ' + str(a.calibrate) if a.calibrate else ''}): "
          + ", ".join(f"{f} {cv[f]:.1%}" for f in FAMILIES)
          + f"; baseline {n_base} trials vs current {n_cur}"
          + (f" (+{n_cur} on confirmation)" if sim.confirm else "") + f"; {a.reps} simulated cases per row\n")

    rows = [("A/A (false positive)", sim.run(a.reps, n_base, n_cur, 0.0))]
    rows += [(f"{s:.0%} slowdown (detection)", sim.run(a.reps, n_base, n_cur, s)) for s in SLOWDOWNS]
    print(f"{'comparison':28s}" + "".join(f"{f:>12s}" for f in FAMILIES) + f"{'any metric':>12s}")
    for label, r in rows:
        print(f"{label:28s}" + "".join(f"{r[f] * 100:11.1f}%" for f in (*FAMILIES, "case")))

    fp, det = rows[0][1], dict(rows)[f"{DETECT_AT:.0%} slowdown (detection)"]
    print(f"\ntargets: false positives <= {FP_TARGET:.0%} per metric; detection >= {DETECT_TARGET:.0%} "
          f"at a {DETECT_AT:.0%} slowdown")
    missed = [f for f in FAMILIES if not (fp[f] <= FP_TARGET and det[f] >= DETECT_TARGET)]
    if not missed:
        print(f"  met for every family at {n_cur} trials")
    else:
        print(f"  NOT met at {n_cur} trials for: {', '.join(missed)}")
        # Smallest trial count that meets both targets per family (baseline grows with it unless pinned).
        need: dict[str, int | None] = dict.fromkeys(missed)
        reps = max(a.reps // 2, 2000)
        for n in range(n_cur + 1, a.max_trials + 1):
            nb = a.baseline_trials or n
            fp_n, det_n = sim.run(reps, nb, n, 0.0), sim.run(reps, nb, n, DETECT_AT)
            for f in missed:
                if need[f] is None and fp_n[f] <= FP_TARGET and det_n[f] >= DETECT_TARGET:
                    need[f] = n
                    print(f"  {f}: met at {n} current trials" + ("" if a.baseline_trials else " a side")
                          + f" (false positives {fp_n[f]:.1%}, detection {det_n[f]:.1%})")
            if all(v is not None for v in need.values()):
                break
        for f, v in need.items():
            if v is None:
                print(f"  {f}: not met up to {a.max_trials} trials")
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
