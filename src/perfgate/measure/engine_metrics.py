"""The engine's own view, from its Prometheus ``/metrics``: deltas over a run.

vLLM and SGLang expose TTFT, inter-token and end-to-end histograms, token
counters and KV-cache gauges. Scraping before and after a run and subtracting
gives the engine-side mean of each histogram over exactly that run, which the
integration tests use as a floor for client-side TTFT (a client can never see a
token before the server produced it).
"""

from __future__ import annotations

from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

from perfgate._http import get_text

# Histograms whose sum/count deltas we keep (vLLM names, then SGLang names).
HISTOGRAMS = (
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:time_per_output_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:request_prefill_time_seconds",
    "vllm:request_decode_time_seconds",
    "sglang:time_to_first_token_seconds",
    "sglang:inter_token_latency_seconds",
    "sglang:e2e_request_latency_seconds",
)
COUNTERS = (
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:request_success_total",
    "vllm:prefix_cache_hits_total",
    "vllm:prefix_cache_queries_total",
    "sglang:prompt_tokens_total",
    "sglang:generation_tokens_total",
)
GAUGES = (
    "vllm:kv_cache_usage_perc", "vllm:num_requests_running", "vllm:num_requests_waiting",
    "sglang:token_usage", "sglang:cache_hit_rate", "sglang:num_running_reqs", "sglang:num_queue_reqs",
)


def parse_metrics(text: str) -> dict[str, float]:
    """Flatten exposition text to ``{name: value}``, summing over label sets.

    Histograms become ``<name>_sum`` and ``<name>_count``; counters keep their
    ``_total`` name; gauges their name.
    """
    out: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if family.name in HISTOGRAMS and name in (f"{family.name}_sum", f"{family.name}_count"):
                out[name] += sample.value
            elif name in COUNTERS or name in GAUGES:
                out[name] += sample.value
    return dict(out)


def scrape(base_url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> dict[str, float] | None:
    """Scrape ``/metrics``; None when the endpoint has none (not an error)."""
    text = get_text(base_url + "/metrics", timeout, headers)
    if text is None:
        return None
    try:
        return parse_metrics(text)
    except ValueError:
        return None


def delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float]:
    """Per-run figures: counter/histogram differences and histogram means (``<name>_mean``)."""
    if before is None or after is None:
        return {}
    out: dict[str, float] = {}
    for key, value in after.items():
        if key.endswith(("_sum", "_count", "_total")):
            out[key] = value - before.get(key, 0.0)
    for name in HISTOGRAMS:
        count = out.get(f"{name}_count", 0.0)
        if count > 0:
            out[f"{name}_mean"] = out[f"{name}_sum"] / count
    return out
