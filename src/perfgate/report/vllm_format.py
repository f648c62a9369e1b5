"""A perfgate result in `vllm bench serve`'s result-file shape, so dashboards built on it keep working.

Key list and definitions from vLLM's ``vllm/benchmarks/serve.py`` (v0.32.0:
``benchmark()``'s ``result`` dict, ``process_one_metric`` for the
``mean_/median_/std_/pNN_<metric>_ms`` keys, ``calculate_metrics`` for
``max_output_tokens_per_s`` and ``max_concurrent_requests``, and ``main()``'s
``result_json`` header keys), as written by ``--save-result`` without
``--save-detailed``. Differences, on purpose (docs/metrics.md):

* values are computed from perfgate's per-request records, so "completed"
  means perfgate's success (200, a token, ``[DONE]``, no error event), TTFT
  starts at perfgate's ``sent_at`` and E2E ends after the last byte;
* ``e2el`` keys are written although vLLM writes them only with
  ``--percentile-metrics ...,e2el``;
* ``std_*`` is the population deviation (ddof=0) as in vLLM; perfgate's own
  ``*.std`` is the sample deviation (ddof=1);
* empty metrics are 0, as in vLLM (perfgate's own are null);
* per-request lists (``latencies``, ``queue_times``, and with
  ``--save-detailed`` ``ttfts``, ``itls``, ...), ``rtfx`` (audio) and
  speculative-decoding keys are not written.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np

from perfgate.schema.result import Result

PERCENTILE_METRICS = ("ttft", "tpot", "itl", "e2el")


def _stats(name: str, values: list[float], percentiles: tuple[float, ...]) -> dict[str, float]:
    """``process_one_metric``'s keys; values in ms (vLLM: ``np.mean(values or 0)`` etc.)."""
    v = values or [0.0]
    out = {f"mean_{name}_ms": float(np.mean(v)), f"median_{name}_ms": float(np.median(v)),
           f"std_{name}_ms": float(np.std(v))}
    for p in percentiles:
        word = str(int(p)) if int(p) == p else str(p)
        out[f"p{word}_{name}_ms"] = float(np.percentile(v, p))
    return out


def _peaks(ok: list, origin: float = 0.0) -> tuple[float, int]:
    """vLLM's ``max_output_tokens_per_s`` and ``max_concurrent_requests``: 1 s buckets from the first send.

    One "token" per streamed chunk (first at send + TTFT, then the ITL gaps), as vLLM counts them.
    """
    if not ok:
        return 0.0, 0
    t0 = min(r.sent_at_s for r in ok)
    t_end = max(r.sent_at_s + r.e2e_ms / 1000 for r in ok)
    n = int(math.ceil(t_end - t0)) + 1
    tokens, conc = np.zeros(n), np.zeros(n)
    for r in ok:
        t = r.sent_at_s + r.ttft_ms / 1000
        times = [t]
        for gap in r.itl_ms:
            t += gap / 1000
            times.append(t)
        for tt in times:
            b = int(tt - t0)
            if 0 <= b < n:
                tokens[b] += 1
        for s in range(int(r.sent_at_s - t0), int(r.sent_at_s + r.e2e_ms / 1000 - t0) + 1):
            conc[s] += 1
    return float(tokens.max()), int(conc.max())


def vllm_result(result: Result, percentiles: tuple[float, ...] = (99.0,), backend: str = "openai",
                label: str | None = None) -> dict:
    """The result file ``vllm bench serve --save-result`` would write for this run, from perfgate's records."""
    w, s = result.workload, result.summary
    ok = [r for r in result.requests if r.error is None]
    duration = s.duration_s if s else 0.0
    total_in = sum(r.prompt_tokens or 0 for r in ok)
    total_out = sum(r.output_tokens or 0 for r in ok)
    peak_tokens, peak_conc = _peaks([r for r in ok if r.ttft_ms is not None and r.e2e_ms is not None])
    has_slo = w.slo_ttft_ms is not None or w.slo_tpot_ms is not None
    out: dict = {
        "date": datetime.now().strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": backend,
        "backend": backend,
        "label": label,
        "model_id": result.environment.model,
        "tokenizer_id": result.environment.model_path or result.environment.model,
        "num_prompts": w.num_requests,
        # vLLM's rate "inf" with --max-concurrency is perfgate's closed loop at that concurrency.
        "request_rate": w.request_rate if w.request_rate is not None else "inf",
        "burstiness": w.burstiness,
        "max_concurrency": w.concurrency if w.concurrency is not None else w.max_concurrency,
        "duration": duration,
        "completed": len(ok),
        "failed": len(result.requests) - len(ok),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": len(ok) / duration if duration > 0 else 0.0,
        "request_goodput": (s.metrics.get("goodput") if s else None) if has_slo else None,
        "output_throughput": total_out / duration if duration > 0 else 0.0,
        "total_token_throughput": (total_in + total_out) / duration if duration > 0 else 0.0,
        "max_output_tokens_per_s": peak_tokens,
        "max_concurrent_requests": peak_conc,
    }
    series = {
        "ttft": [r.ttft_ms for r in ok if r.ttft_ms is not None],
        "tpot": [r.tpot_ms for r in ok if r.tpot_ms is not None],
        "itl": [g for r in ok for g in r.itl_ms],
        "e2el": [r.e2e_ms for r in ok if r.e2e_ms is not None],
    }
    for name in PERCENTILE_METRICS:
        out.update(_stats(name, series[name], percentiles))
    return out
