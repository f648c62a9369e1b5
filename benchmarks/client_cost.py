"""What perfgate's load client costs and how far it is off, against the reference engine's truth.

Boots the reference engine (`perfgate sim`, true TTFT 50 ms, ITL 5 ms, 128
output tokens, 32-token prompts) and runs `perfgate load` against it as a
subprocess at each concurrency, at two run sizes. Per concurrency it prints:

* client CPU µs per streamed token **in the window** (the result's
  `client_health.client_cpu_s`, all worker processes summed) and for the **whole
  process** (children's rusage, difference of the two run sizes so start-up
  and prompt preparation mostly cancel);
* mean and p99 TTFT error and p50 ITL error against the simulator's truth for
  the same requests (client − truth);
* reads per token (a busy engine writes several events at once, and fewer
  reads mean less client work per token, so µs per token is only comparable
  at equal reads per token) and in-window µs per read;
* requests in flight: time-weighted mean over the window as the client saw
  them (send → done) and as the engine saw them (arrival → done), and the
  client's maximum.

By default the simulator is pinned to core 0 and the client to the other
cores (`--no-pin` to share them, e.g. for `--workers`), so the two do not
fight for one core. `--src DIR` runs the client from another source tree (e.g. the code before a
change, `git archive <rev> src | tar -x -C /tmp/before`); extra `perfgate load`
options go after `--`:

    python benchmarks/client_cost.py [--concurrency 1 64 256] [--src DIR] [-- --workers 2 --no-uvloop]

Prints figures; asserts nothing (figures and targets in docs/accuracy.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from perfgate.config.matrix import EngineConfig
from perfgate.engines import ModelRef, get_adapter
from perfgate.engines.server import EngineServer

OUT_TOKENS, IN_TOKENS = 128, 32


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _get(url: str) -> dict:
    with urllib.request.urlopen(url) as r:
        return json.loads(r.read())


def _reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/sim/reset", data=b"", method="POST")).read()


def _mean_in_flight(intervals: list[tuple[float, float]], t0: float, t1: float) -> tuple[float, int]:
    """Time-weighted mean and maximum of open intervals over [t0, t1]."""
    edges = sorted([(max(a, t0), 1) for a, b in intervals] + [(min(b, t1), -1) for a, b in intervals])
    area, level, peak, last = 0.0, 0, 0, t0
    for t, d in edges:
        area += level * max(0.0, t - last)
        last = max(last, t)
        level += d
        peak = max(peak, level)
    return area / (t1 - t0) if t1 > t0 else 0.0, peak


PIN_CLIENT: set[int] = set()  # cores for the client (--pin): the simulator has the others


def run_client(url: str, c: int, n: int, out: Path, src: str | None, extra: list[str]) -> dict:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    cmd = [sys.executable, "-m", "perfgate", "load", url, "--model", "sim", "--concurrency", str(c),
           "--num-requests", str(n), "--prompt-tokens", str(IN_TOKENS), "--max-tokens", str(OUT_TOKENS),
           "--warmup", str(c), "--out", str(out), *extra]
    p = subprocess.run(cmd, check=False, capture_output=True, env=env, text=True,
                       preexec_fn=(lambda: os.sched_setaffinity(0, PIN_CLIENT)) if PIN_CLIENT else None)
    files = list((out / "results").glob("*.result.json"))
    if not files:
        raise SystemExit(f"perfgate load failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return json.loads(files[0].read_text())


def measure(url: str, c: int, sizes: tuple[float, float], tmp: Path, src: str | None, extra: list[str]) -> dict:
    base = max(c, 16)
    small, large = int(base * sizes[0]), int(base * sizes[1])
    cpu, doc, truth = {}, None, None
    for n in (small, large):
        _reset(url)
        before = _children_cpu()
        doc = run_client(url, c, n, tmp / f"c{c}-n{n}", src, extra)
        cpu[n] = _children_cpu() - before
        truth = _get(url + "/sim/truth")
    o = doc["clock_origin_s"]
    ok = [q for q in doc["requests"] if q["error"] is None]
    ttft_err, client_gaps, true_gaps, client_iv, server_iv = [], [], [], [], []
    for q in ok:
        t = truth.get(f"perfgate-{q['index']}")
        if not t or q["ttft_ms"] is None or t["ttft_s"] is None:
            continue
        ttft_err.append(q["ttft_ms"] - t["ttft_s"] * 1000)
        client_gaps += q["itl_ms"]
        w = [ch["written"] for ch in t["chunks"]]
        true_gaps += list(np.diff(w) * 1000)
    for q in doc["requests"]:
        client_iv.append((o + q["sent_at_s"], o + q["sent_at_s"] + (q["e2e_ms"] or 0) / 1000))
    measured = {f"perfgate-{q['index']}" for q in doc["requests"]}
    for k, t in truth.items():
        if k in measured and t["done"] is not None:
            server_iv.append((t["arrival"], t["done"]))
    t0, t1 = o, o + doc["summary"]["duration_s"]
    client_mean, client_peak = _mean_in_flight(client_iv, t0, t1)
    server_mean, _ = _mean_in_flight(server_iv, t0, t1)
    tokens = sum(q.get("output_tokens") or 0 for q in ok)
    # Reads that carried tokens: events completed by one read share its time (gap 0). Fewer reads per
    # token (an engine writing in bursts) means less client work per token, so say how many there were.
    reads = sum(1 + sum(1 for g in q["itl_ms"] if g > 0) for q in ok if q["chunks"])
    health = doc["client_health"]
    err = np.array(ttft_err)
    return {
        "c": c, "n": large, "failed": doc["summary"]["failed"], "status": doc["status"],
        "window_us_tok": health["client_cpu_s"] / tokens * 1e6 if tokens else float("nan"),
        "process_us_tok": (cpu[large] - cpu[small]) / ((large - small) * OUT_TOKENS) * 1e6,
        "ttft_mean_err": float(err.mean()), "ttft_p99_err": float(np.percentile(err, 99)),
        "itl_p50_err": float(np.median(client_gaps) - np.median(true_gaps)),
        "inflight_client": client_mean, "inflight_server": server_mean, "inflight_peak": client_peak,
        "loop_lag_p99": health.get("loop_lag_ms_p99"), "reads_per_token": reads / tokens if tokens else float("nan"),
        "client": (doc.get("client") or {}),
    }


def main() -> int:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 64, 256])
    ap.add_argument("--sizes", type=float, nargs=2, default=[1.0, 4.0], help="run sizes as multiples of max(concurrency, 16)")
    ap.add_argument("--src", default=None, help="source tree (its src/ directory) of the client to measure")
    ap.add_argument("--itl-ms", type=float, default=5.0,
                    help="the simulator's ITL (default 5; a longer one lets it keep up, one read per token)")
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                    help="simulator on core 0, client on the other cores (default; --no-pin for multi-process runs)")
    a = ap.parse_args(argv)
    if a.pin:
        PIN_CLIENT.update(os.sched_getaffinity(0) - {0})
    rows = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg = EngineConfig(id="sim", kind="sim", boot_timeout_s=30, flags=("--ttft-base-ms", "50", "--itl-ms", str(a.itl_ms)),
                           cpus=(0,) if a.pin else ())
        sim = EngineServer(get_adapter("sim"), cfg, ModelRef("sim", "sim"), Path(sys.executable), tmp / "sim.log").start()
        try:
            for c in a.concurrency:
                rows.append(measure(sim.base_url, c, tuple(a.sizes), tmp, a.src, extra))
                print(f"  c={c} done", flush=True)
        finally:
            sim.stop()
    print(f"\nclient: {a.src or 'this tree'} {' '.join(extra)}  ({time.perf_counter() - t_start:.0f} s, "
          f"load average {os.getloadavg()[0]:.2f}, {'simulator on core 0, client on ' + str(sorted(PIN_CLIENT)) if a.pin else 'not pinned'})")
    info = rows[0]["client"]
    if info:
        print("client info:", json.dumps(info, sort_keys=True)[:300])
    hdr = (f"{'conc':>5s} {'n':>5s} {'us/tok window':>13s} {'us/tok process':>14s} {'TTFT err mean':>13s} "
           f"{'p99':>7s} {'ITL p50 err':>11s} {'in flight client':>16s} {'engine':>7s} {'peak':>5s} "
           f"{'loop p99':>8s} {'reads/tok':>9s} {'status':>12s}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['c']:5d} {r['n']:5d} {r['window_us_tok']:13.1f} {r['process_us_tok']:14.1f} "
              f"{r['ttft_mean_err']:+13.2f} {r['ttft_p99_err']:+7.2f} {r['itl_p50_err']:+11.3f} "
              f"{r['inflight_client']:16.1f} {r['inflight_server']:7.1f} {r['inflight_peak']:5d} "
              f"{(r['loop_lag_p99'] or 0):8.2f} {r['reads_per_token']:9.2f} {r['status']:>12s}")
    print("window µs per read:", ", ".join(f"c={r['c']}: {r['window_us_tok'] / r['reads_per_token']:.1f}" for r in rows))
    print("\n(ms; errors = client − simulator truth for the same requests; us/tok = client CPU µs per streamed token)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
