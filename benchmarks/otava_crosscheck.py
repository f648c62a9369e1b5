"""Cross-check perfgate's change points against Apache Otava 0.8.0 on the same exported series.

    PYTHONPATH=src .venv/bin/python benchmarks/otava_crosscheck.py [--series 120] [--seed 0]

Otava is installed in its own venv (``<perfgate cache>/otava-venv``; it pins
numpy 2.2 and scipy < 1.17, so never in perfgate's). Synthetic nightly series
(40 runs; noise 2-15% lognormal; one planted slowdown of 3-20% at a random
run, and a fifth of the series with none) are recorded in a real history
store, exported as otava-csv by perfgate, and read back by Otava's own CSV
importer. Both methods run at p <= 0.001 with no minimum magnitude (the method
itself), and perfgate's gate (min_effect 5%, Holm, lookback) is shown beside.
A detection within +-2 runs of the planted step is a hit; runs-to-detect is
how many runs after the step the method first finds it, analysing the series
as it grew night by night. Prints where both find change points, then
precision / recall and runs-to-detect for each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from perfgate.history.location import cache_dir  # noqa: E402
from perfgate.history.store import HistoryStore  # noqa: E402
from perfgate.history.transfer import to_otava_csv  # noqa: E402
from perfgate.judge.changepoint import HistoryPolicy, change_points, judge_history  # noqa: E402
from perfgate.schema.result import Result  # noqa: E402

OTAVA = "apache-otava==0.8.0"
METRIC = "itl_per_token_ms.p50"
N_RUNS, TOL, HORIZON = 40, 2, 10
STEPS, NOISES = (0.03, 0.05, 0.10, 0.20), (0.02, 0.05, 0.10, 0.15)

WORKER = r"""
import json, sys
from datetime import datetime, timezone
from otava.analysis import compute_change_points
from otava.data_selector import DataSelector
from otava.importer import CsvImporter
from otava.series import AnalysisOptions
from otava.test_config import CsvMetric, CsvTestConfig
jobs, out = json.load(open(sys.argv[1])), []
opts = AnalysisOptions()
opts.max_pvalue, opts.min_magnitude = 0.001, 0.0
sel = DataSelector()
sel.since_time = datetime(2000, 1, 1, tzinfo=timezone.utc)
for job in jobs:  # perfgate's otava-csv through Otava's own importer and analysis
    conf = CsvTestConfig(job["name"], job["file"], time_column="time", attributes=["run", "engine_version"],
                         metrics=[CsvMetric(job["metric"], 1, 1.0, job["metric"])])
    series = CsvImporter().fetch_data(conf, sel)
    full = sorted(int(c.index) for c in series.analyze(opts).change_points.get(job["metric"], []))
    values = series.data[job["metric"]]
    grown = [sorted(int(c.index) for c in compute_change_points(values[:n], window_len=opts.window_len,
                                                                max_pvalue=opts.max_pvalue,
                                                                min_magnitude=opts.min_magnitude)[0])
             for n in job["lengths"][1:]]  # the series as it stood after each night (what analyze runs)
    out.append([full, *grown])
json.dump(out, open(sys.argv[2], "w"))
"""


def otava_python() -> tuple[Path | None, str]:
    """The otava venv's interpreter, installing it on first use; (None, why) when it cannot be installed."""
    venv = cache_dir() / "otava-venv"
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import otava"], capture_output=True).returncode == 0:
        return py, "cached"
    proc = subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True)
    if proc.returncode:
        return None, f"python -m venv failed: {proc.stderr.strip()[-500:]}"
    proc = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", OTAVA],
                          capture_output=True, text=True)
    if proc.returncode:
        return None, f"pip install {OTAVA} failed: {proc.stderr.strip()[-800:]}"
    return py, "installed"


def _result(case: str, night: int, value: float) -> Result:
    return Result.model_validate({
        "test_id": case, "scenario": case, "trial": 0,
        "environment": {"engine": {"name": "sim", "version": "0.32.0"}, "model": "tiny",
                        "hardware": {"accelerator": "cpu"}, "machine": "crosscheck", "perfgate_version": "0.1.0",
                        "python": "3.11", "hostname": "h",
                        "started_at": (datetime(2026, 1, 1, 2, tzinfo=UTC) + timedelta(days=night)).isoformat()},
        "workload": {"scenario": case, "num_requests": 1, "prompt_tokens": 1, "max_tokens": 1},
        "summary": {"completed": 1, "failed": 0, "duration_s": 1.0, "metrics": {METRIC: value}},
    })


def synthetic(per_cell: int, seed: int) -> list[dict]:
    """``per_cell`` series for every step size x noise level, and ``per_cell`` of pure noise per noise level."""
    rng = np.random.default_rng(seed)
    out = []
    cells = [(st, n) for st in STEPS for n in NOISES] + [(0.0, n) for n in NOISES]
    for rep in range(per_cell):
        for step, noise in cells:
            at = int(rng.integers(12, 29)) if step else None
            x = 5.0 * np.exp(rng.normal(0, noise, N_RUNS))
            if at is not None:
                x[at:] *= 1 + step
            out.append({"case": f"s{len(out):03d}", "noise": noise, "step": step, "at": at, "values": x.tolist()})
    return out


def runs_to_detect(found_by_len: list[list[int]], at: int, lengths: list[int]) -> int | None:
    for n, found in zip(lengths, found_by_len):
        if any(abs(i - at) <= TOL for i in found):
            return n - at
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-cell", type=int, default=6, help="series per step x noise cell (and of pure noise)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = synthetic(args.per_cell, args.seed)
    py, how = otava_python()
    print(f"otava: {OTAVA} {how}" + ("" if py else f" -> otava side skipped: {how}"))
    pol = HistoryPolicy(metrics=(METRIC,), min_effect={METRIC: 0.0}, alpha=0.001)
    gate = HistoryPolicy(metrics=(METRIC,))
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore.open(f"sqlite:///{tmp}/h.sqlite")
        jobs, ours, gated = [], [], []
        for s in data:
            sid = None
            for night, v in enumerate(s["values"]):
                sid = store.record_run([_result(s["case"], night, v)], "ok").series_id
            series = store.series(sid)
            runs = series.runs
            csv_path = Path(tmp) / f"{s['case']}.csv"
            csv_path.write_text(to_otava_csv(series, [METRIC]))
            lengths = [N_RUNS] + (list(range(12, N_RUNS + 1)) if s["at"] is None else
                                  list(range(s["at"] + 1, min(s["at"] + HORIZON, N_RUNS) + 1)))
            s["lengths"] = lengths
            jobs.append({"name": s["case"], "file": str(csv_path), "metric": METRIC, "lengths": lengths})
            ours.append([[c.index for c in change_points(runs[:n], pol)] for n in lengths])
            gated.append([[c.index for c in judge_history(runs[:n], gate)] for n in lengths])
        store.close()
        theirs = None
        if py:
            (Path(tmp) / "jobs.json").write_text(json.dumps(jobs))
            proc = subprocess.run([str(py), "-c", WORKER, f"{tmp}/jobs.json", f"{tmp}/out.json"],
                                  capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
            if proc.returncode:
                print(f"otava run failed: {proc.stderr.strip()[-800:]}")
            else:
                theirs = json.loads((Path(tmp) / "out.json").read_text())
    report(data, {"perfgate": ours, "otava": theirs, "perfgate gate": gated})
    return 0


def report(data: list[dict], methods: dict[str, list | None]) -> None:
    planted = [s for s in data if s["at"] is not None]
    print(f"\n{len(data)} series of {N_RUNS} runs ({len(planted)} with a planted step, {len(data) - len(planted)} "
          f"pure noise); hit = within +-{TOL} runs of the planted step")
    if methods["otava"] is not None:
        print("\nwhere both find change points (full series, the first 16 series: one per step x noise cell):")
        agree = near = 0
        for k, s in enumerate(data):
            a, b = methods["perfgate"][k][0], methods["otava"][k][0]
            agree += a == b
            near += len(a) == len(b) and all(abs(i - j) <= 1 for i, j in zip(a, b))
            if k < 16:
                print(f"  {s['case']} noise {s['noise']:>3.0%} step {s['step']:>+4.0%} at {s['at']}: "
                      f"perfgate {a}  otava {b}")
        print(f"  same change points on the full series: {agree}/{len(data)} identical, {near}/{len(data)} within 1 run")
    for name, res in methods.items():
        if res is None:
            print(f"\n{name}: not run")
            continue
        by = dict(zip((s["case"] for s in data), res))
        print(f"\n{name}:")
        if name != "perfgate gate":
            tp = sum(1 for s in planted for i in by[s["case"]][0] if abs(i - s["at"]) <= TOL)
            other = sum(1 for s in data for i in by[s["case"]][0] if s["at"] is None or abs(i - s["at"]) > TOL)
            hit = [any(abs(i - s["at"]) <= TOL for i in by[s["case"]][0]) for s in planted]
            print(f"  full series: precision {tp / max(tp + other, 1):.2f} ({tp} hits, {other} other change points), "
                  f"recall {sum(hit) / len(planted):.2f} ({sum(hit)}/{len(planted)})")
        else:
            hit = [runs_to_detect(by[s["case"]][1:], s["at"], s["lengths"][1:]) is not None for s in planted]
            print(f"  (judges the newest runs only) recall: found within {HORIZON} nights in {sum(hit)}/{len(planted)}")
        cell = defaultdict(list)
        for s, h in zip(planted, hit):
            cell[(s["step"], s["noise"])].append(h)
        print("  recall, step (rows) x noise (columns): " + "  ".join(f"{n:>5.0%}" for n in NOISES))
        for st in STEPS:
            print(f"    {st:>4.0%}                               "
                  + "  ".join(f"{np.mean(cell[(st, n)]):>5.2f}" for n in NOISES))
        for st in STEPS:
            got = [r for s in planted if s["step"] == st
                   if (r := runs_to_detect(by[s["case"]][1:], s["at"], s["lengths"][1:])) is not None]
            n_st = sum(s["step"] == st for s in planted)
            print(f"  runs to detect a {st:>3.0%} step: median {np.median(got) if got else float('nan'):.0f} "
                  f"(found within {HORIZON} nights in {len(got)}/{n_st})")
        nights = alarms = 0
        for s in data:
            if s["at"] is None:
                for n, found in zip(s["lengths"][1:], by[s["case"]][1:]):
                    nights += 1
                    alarms += any(i >= n - 5 for i in found)
        print(f"  pure noise: a change point in the 5 newest runs on {alarms}/{nights} nights "
              f"({alarms / max(nights, 1):.1%})")


if __name__ == "__main__":
    raise SystemExit(main())
