"""The result of one load run as a table on the terminal, laid out like `vllm bench serve`'s printout.

People read load results in that shape; the figures are perfgate's own
(docs/metrics.md): percentiles from the trial summary, TPOT excluding the
first token, ITL per streamed chunk, E2E to the last byte.
"""

from __future__ import annotations

from perfgate.schema.result import Result

_W = 50
_SECTIONS = (
    ("ttft_ms", "TTFT", "Time to First Token"),
    ("tpot_ms", "TPOT", "Time per Output Token (excl. 1st token)"),
    ("itl_ms", "ITL", "Inter-token Latency"),
    ("e2e_ms", "E2E", "End-to-end Latency"),
)


def _row(label: str, value) -> str:
    if value is None:
        text = "n/a"
    elif isinstance(value, float):
        text = f"{value:.2f}"
    else:
        text = str(value)
    return f"{label:<40} {text}"


def load_table(result: Result, percentiles: tuple[float, ...] = (99.0,)) -> str:
    """Rows: counts, duration, tokens, throughputs, goodput, errors, then mean/median/pNN per latency metric."""
    s, w, h = result.summary, result.workload, result.client_health
    m = s.metrics if s else {}
    ok = [r for r in result.requests if r.error is None]
    lines = [" Serving Benchmark Result ".center(_W, "=")]
    lines.append(_row("Status:", result.status + (f" ({result.failure_reason})" if result.failure_reason else "")))
    lines.append(_row("Successful requests:", s.completed if s else 0))
    lines.append(_row("Failed requests:", s.failed if s else 0))
    for kind, count in sorted((s.errors if s else {}).items()):
        lines.append(_row(f"  {kind}:", count))
    if w.concurrency is not None:
        lines.append(_row("Concurrency (closed loop):", w.concurrency))
    else:
        lines.append(_row("Request rate (req/s, open loop):", w.request_rate))
        if w.max_concurrency:
            lines.append(_row("Maximum request concurrency:", w.max_concurrency))
    lines.append(_row("Benchmark duration (s):", s.duration_s if s else None))
    lines.append(_row("Total input tokens:", sum(r.prompt_tokens or 0 for r in ok)))
    lines.append(_row("Total generated tokens:", sum(r.output_tokens or 0 for r in ok)))
    lines.append(_row("Request throughput (req/s):", m.get("request_throughput")))
    lines.append(_row("Output token throughput (tok/s):", m.get("output_throughput")))
    lines.append(_row("Total token throughput (tok/s):", m.get("total_token_throughput")))
    if w.slo_ttft_ms is not None or w.slo_tpot_ms is not None:
        lines.append(_row("Request goodput (req/s):", m.get("goodput")))
    for key, short, header in _SECTIONS:
        lines.append(f"{header:-^{_W}}")
        lines.append(_row(f"Mean {short} (ms):", m.get(f"{key}.mean")))
        lines.append(_row(f"Median {short} (ms):", m.get(f"{key}.p50")))
        for p in percentiles:
            word = str(int(p)) if int(p) == p else str(p)
            lines.append(_row(f"P{word} {short} (ms):", m.get(f"{key}.p{word}")))
    if h is not None or result.client is not None:
        lines.append(f"{'Client':-^{_W}}")
        c = result.client
        if c is not None:
            lines.append(_row("Event loop / HTTP / processes:", f"{c.event_loop} / {c.http_client} / {c.workers}"))
        if h is not None:
            tokens = sum(r.output_tokens or 0 for r in ok)
            if h.client_cpu_s is not None and tokens:
                lines.append(_row("Client CPU per token, window (us):", h.client_cpu_s / tokens * 1e6))
            lines.append(_row("Event-loop stall p99 (ms):", h.loop_lag_ms_p99))
            if h.schedule_lag_ms_p99 is not None:
                lines.append(_row("Schedule lag p99 (ms):", h.schedule_lag_ms_p99))
            for why in h.earlier_attempts:
                lines.append(f"Re-run, an earlier attempt was {why}")
    lines.append("=" * _W)
    return "\n".join(lines)
