"""/metrics parsing and per-run deltas (vLLM names; SGLang names from its documented example)."""

from perfgate.measure.engine_metrics import delta, parse_metrics

VLLM = """# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="tiny"} 3.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="tiny"} 4.0
vllm:time_to_first_token_seconds_count{model_name="tiny"} 4.0
vllm:time_to_first_token_seconds_sum{model_name="tiny"} 0.5
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{model_name="tiny"} 100.0
# HELP vllm:kv_cache_usage_perc KV-cache usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.25
"""

# From SGLang's documented /metrics example (docs: references/production_metrics).
SGLANG = """# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 8.128902e+06
# HELP sglang:cache_hit_rate The cache hit rate
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.007507552643049313
# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_sum{model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.3518979474117756e+06
sglang:time_to_first_token_seconds_bucket{le="0.001",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0
sglang:time_to_first_token_seconds_bucket{le="+Inf",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0e+06
sglang:time_to_first_token_seconds_count{model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0e+06
"""


def test_vllm_names():
    m = parse_metrics(VLLM)
    assert m["vllm:time_to_first_token_seconds_count"] == 4.0
    assert m["vllm:time_to_first_token_seconds_sum"] == 0.5
    assert m["vllm:generation_tokens_total"] == 100.0
    assert m["vllm:kv_cache_usage_perc"] == 0.25
    assert not any(k.endswith("_bucket") for k in m)


def test_sglang_documented_example():
    m = parse_metrics(SGLANG)
    assert m["sglang:prompt_tokens_total"] == 8.128902e6
    assert m["sglang:time_to_first_token_seconds_count"] == 2.0e6
    assert m["sglang:cache_hit_rate"] > 0


def test_delta_gives_run_mean():
    before = parse_metrics(VLLM)
    after = parse_metrics(VLLM.replace("_count{model_name=\"tiny\"} 4.0", "_count{model_name=\"tiny\"} 8.0")
                          .replace("_sum{model_name=\"tiny\"} 0.5", "_sum{model_name=\"tiny\"} 1.3")
                          .replace("} 100.0", "} 164.0"))
    d = delta(before, after)
    assert d["vllm:time_to_first_token_seconds_count"] == 4.0
    assert abs(d["vllm:time_to_first_token_seconds_mean"] - 0.2) < 1e-12
    assert d["vllm:generation_tokens_total"] == 64.0
    assert "vllm:kv_cache_usage_perc" not in d  # gauges are not deltas
    assert delta(None, after) == {}


def test_the_engines_prefix_selects_its_families():
    """An adapter's ``capabilities.metrics_prefix`` picks the names kept: a vLLM engine's result holds no
    SGLang families (a proxy exporting both would otherwise mix them); an endpoint (None) keeps every
    known prefix; a third-party engine's prefix gets the same names under it."""
    both = VLLM + SGLANG
    assert set(parse_metrics(both, "vllm:")) == set(parse_metrics(VLLM))
    assert not any(k.startswith("vllm:") for k in parse_metrics(both, "sglang:"))
    assert set(parse_metrics(both)) == set(parse_metrics(VLLM)) | set(parse_metrics(SGLANG))
    acme = parse_metrics(VLLM.replace("vllm:", "acme:"), "acme:")
    assert acme["acme:time_to_first_token_seconds_count"] == 4.0 and acme["acme:kv_cache_usage_perc"] == 0.25
    assert parse_metrics(VLLM.replace("vllm:", "acme:")) == {}  # an unknown prefix is not guessed

