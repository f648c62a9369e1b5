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

KNOWN_PREFIXES = ("vllm:", "sglang:")
"""The engines' Prometheus name prefixes (an adapter's ``capabilities.metrics_prefix``). An endpoint
perfgate did not start has no known prefix: every one of these is looked for."""

# Names after the prefix (vLLM names, then SGLang's own; an engine exposes those it has).
HISTOGRAM_NAMES = (
    "time_to_first_token_seconds", "inter_token_latency_seconds", "time_per_output_token_seconds",
    "e2e_request_latency_seconds", "request_queue_time_seconds", "request_prefill_time_seconds",
    "request_decode_time_seconds", "queue_time_seconds",
)
COUNTER_NAMES = (
    "prompt_tokens_total", "generation_tokens_total", "request_success_total", "prefix_cache_hits_total",
    "prefix_cache_queries_total",
    "num_preemptions_total", "prompt_tokens_cached_total",  # vLLM: preempted requests, prompt tokens from the cache
    "cached_tokens_total",  # SGLang: prompt tokens from the cache (summed over its cache_source labels)
)
GAUGE_NAMES = (
    "kv_cache_usage_perc", "num_requests_running", "num_requests_waiting",
    "token_usage", "cache_hit_rate", "num_running_reqs", "num_queue_reqs",
)


PROCESS_START = "process_start_time_seconds"
"""prometheus_client's process gauge: another value in the after-scrape means another process answered."""
INSTANCE_KEY = "perfgate:instances"
"""The label sets of ``instance``/``pod`` seen in a scrape, hashed (a change: another replica answered)."""


def _prefixes(prefix: str | None) -> tuple[str, ...]:
    return (prefix,) if prefix else KNOWN_PREFIXES


def histograms(prefix: str | None = None) -> tuple[str, ...]:
    """Histogram families kept for an engine with ``prefix`` (None: every known prefix)."""
    return tuple(p + n for p in _prefixes(prefix) for n in HISTOGRAM_NAMES)


def counters(prefix: str | None = None) -> tuple[str, ...]:
    return tuple(p + n for p in _prefixes(prefix) for n in COUNTER_NAMES)


def gauges(prefix: str | None = None) -> tuple[str, ...]:
    """Gauges an engine with ``prefix`` may expose (the telemetry sampler reads them during a window)."""
    return tuple(p + n for p in _prefixes(prefix) for n in GAUGE_NAMES)


def parse_metrics(text: str, prefix: str | None = None) -> dict[str, float]:
    """Flatten exposition text to ``{name: value}``, summing over label sets.

    Only the families of ``prefix`` (the engine's ``capabilities.metrics_prefix``; None: every
    known prefix) are kept. Histograms become ``<name>_sum`` and ``<name>_count``; counters keep
    their ``_total`` name; gauges their name.
    """
    kept_histograms = set(histograms(prefix))
    plain = set(counters(prefix)) | set(gauges(prefix)) | {PROCESS_START}
    out: dict[str, float] = defaultdict(float)
    instances: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            for label in ("instance", "pod", "kubernetes_pod_name"):
                if label in sample.labels:
                    instances.add(f"{label}={sample.labels[label]}")
            if family.name in kept_histograms and name in (f"{family.name}_sum", f"{family.name}_count"):
                out[name] += sample.value
            elif name in plain:
                out[name] += sample.value
    if instances:
        import zlib

        out[INSTANCE_KEY] = float(zlib.crc32(",".join(sorted(instances)).encode()))
    return dict(out)


def replica_change(before: dict[str, float] | None, after: dict[str, float] | None) -> str | None:
    """Why the two scrapes cannot be subtracted (another process or pod answered the second), or None."""
    if not before or not after:
        return None
    for key, what in ((PROCESS_START, "process start time"), (INSTANCE_KEY, "instance/pod label")):
        if key in before and key in after and before[key] != after[key]:
            return (f"the before and after /metrics scrapes came from different processes ({what} changed: "
                    "replicas behind one URL, or a restart): server_metrics deltas refused")
    return None


def scrape(base_url: str, timeout: float = 5.0, headers: dict[str, str] | None = None,
           prefix: str | None = None) -> dict[str, float] | None:
    """Scrape ``/metrics`` for the families of ``prefix``; None when the endpoint has none (not an error)."""
    text = get_text(base_url + "/metrics", timeout, headers)
    if text is None:
        return None
    try:
        return parse_metrics(text, prefix)
    except ValueError:
        return None


def delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float]:
    """Per-run figures: counter/histogram differences and histogram means (``<name>_mean``)."""
    if before is None or after is None:
        return {}
    out: dict[str, float] = {}
    if replica_change(before, after):
        return {}
    for key, value in after.items():
        if key.endswith(("_sum", "_count", "_total")):
            out[key] = value - before.get(key, 0.0)
    for name in sorted(k.removesuffix("_count") for k in out if k.endswith("_count")):  # histograms only
        count = out[f"{name}_count"]
        if count > 0 and f"{name}_sum" in out:
            out[f"{name}_mean"] = out[f"{name}_sum"] / count
    return out
