"""Soak: perfgate's load client against the reference engine at high concurrency for a few minutes.

Boots ``perfgate sim`` (loopback, true TTFT 20 ms, ITL 2 ms) through the suite's own lifecycle and drives
it in back-to-back windows, each one ``run_load`` call at the given concurrency, its records parsed and
summarized exactly as a trial's are, then dropped. After every window it prints the client's RSS, the
window's request count, errors by class and throughput; at the end the RSS trend (first vs last windows,
and a least-squares slope) and the totals. Flat RSS and zero errors over minutes is what this shows; a
leak in the client, the parser or the metrics would show as a slope.

    .venv/bin/python benchmarks/soak.py [--minutes 3] [--concurrency 128] [--requests-per-window 2048]

Prints figures; asserts nothing. Results: docs/faults.md.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil

from perfgate.config.matrix import EngineConfig
from perfgate.engines import ModelRef, get_adapter
from perfgate.engines.server import EngineServer
from perfgate.measure.loadgen import RequestSpec, run_load
from perfgate.measure.metrics import error_classes, request_record, summarize
from perfgate.measure.sse import parse_stream

PROMPT_WORDS, MAX_TOKENS = 16, 32


def _specs(n: int, start: int) -> list[RequestSpec]:
    prompt = " ".join(["w"] * PROMPT_WORDS)  # the sim counts whitespace-separated words
    return [RequestSpec.build(start + i, "/v1/completions",
                              {"model": "soak", "prompt": prompt, "max_tokens": MAX_TOKENS, "stream": True,
                               "stream_options": {"include_usage": True}, "return_token_ids": True})
            for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, default=128)
    p.add_argument("--requests-per-window", type=int, default=2048)
    a = p.parse_args(argv)

    me = psutil.Process()
    log_dir = Path(tempfile.mkdtemp(prefix="perfgate-soak-"))
    cfg = EngineConfig(id="sim", kind="sim", flags=("--ttft-base-ms", "20", "--itl-ms", "2"), boot_timeout_s=60)
    server = EngineServer(get_adapter("sim"), cfg, ModelRef("soak", "soak"), Path(sys.executable),
                          log_dir / "sim.log").start()
    rss, totals, errors = [], Counter(), Counter()
    print(f"soak: sim on {server.base_url}, concurrency {a.concurrency}, {a.requests_per_window} requests per "
          f"window, {MAX_TOKENS} tokens each, for {a.minutes:g} min")
    print(f"{'t (s)':>7} {'window':>6} {'requests':>8} {'errors':>6} {'req/s':>7} {'tok/s':>8} {'RSS MiB':>8}")
    t0 = time.monotonic()
    window = 0
    try:
        while time.monotonic() - t0 < a.minutes * 60:
            specs = _specs(a.requests_per_window, window * a.requests_per_window)
            run = run_load(server.base_url, specs, concurrency=a.concurrency, timeout_s=60)
            records = [request_record(r, parse_stream(r.chunks) if r.chunks else None, run.start)
                       for r in run.requests]
            summary = summarize(records, run.duration_s)
            totals["requests"] += len(records)
            totals["tokens"] += sum(r.output_tokens or 0 for r in records if r.error is None)
            errors.update(summary.errors)
            del run, records, specs
            gc.collect()
            mib = me.memory_info().rss / 2**20
            rss.append((time.monotonic() - t0, mib))
            m = summary.metrics
            print(f"{rss[-1][0]:7.1f} {window:6d} {summary.completed + summary.failed:8d} {summary.failed:6d} "
                  f"{m['request_throughput']:7.1f} {m['output_throughput']:8.0f} {mib:8.1f}", flush=True)
            window += 1
    finally:
        server.stop()
    elapsed = time.monotonic() - t0
    t, mem = np.array([x for x, _ in rss]), np.array([y for _, y in rss])
    slope = float(np.polyfit(t, mem, 1)[0]) * 60 if len(t) > 2 else float("nan")
    h = len(t) // 2  # the second half: after the allocator's warm-up, a leak is a slope here
    late = float(np.polyfit(t[h:], mem[h:], 1)[0]) * 60 if len(t) - h > 2 else float("nan")
    k = max(1, len(mem) // 4)
    print(f"\nwindows {len(rss)}, {elapsed:.0f} s, requests {totals['requests']}, errors "
          f"{sum(errors.values())} {dict(error_classes(dict(errors))) or ''}")
    print(f"throughput {totals['requests'] / elapsed:.1f} req/s, {totals['tokens'] / elapsed:.0f} tok/s "
          "(windows back to back, parsing included)")
    print(f"client RSS: first window {mem[0]:.1f} MiB, mean of first {k} {mem[:k].mean():.1f} MiB, "
          f"mean of last {k} {mem[-k:].mean():.1f} MiB, max {mem.max():.1f} MiB; slope {slope:+.2f} MiB/min, "
          f"second half {late:+.2f} MiB/min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
