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



def _counter(name: str, lines: list[str]) -> str:
    return f"# HELP {name} x\n# TYPE {name} counter\n" + "".join(f"{ln}\n" for ln in lines)


def test_preemptions_cached_prompt_tokens_and_queue_time_are_collected():
    vllm = (_counter("vllm:num_preemptions_total", ['vllm:num_preemptions_total{model_name="m"} 3.0'])
            + _counter("vllm:prompt_tokens_cached_total", ['vllm:prompt_tokens_cached_total{model_name="m"} 900.0']))
    sglang = (_counter("sglang:cached_tokens_total", ['sglang:cached_tokens_total{cache_source="device"} 30.0',
                                                      'sglang:cached_tokens_total{cache_source="host"} 12.0'])
              + "# HELP sglang:queue_time_seconds q\n# TYPE sglang:queue_time_seconds histogram\n"
                'sglang:queue_time_seconds_bucket{le="+Inf"} 4.0\nsglang:queue_time_seconds_sum 0.2\n'
                "sglang:queue_time_seconds_count 4.0\n")
    v0, v1 = parse_metrics(vllm.replace("3.0", "1.0").replace("900.0", "100.0"), "vllm:"), parse_metrics(vllm, "vllm:")
    assert delta(v0, v1) == {"vllm:num_preemptions_total": 2.0, "vllm:prompt_tokens_cached_total": 800.0}
    s = parse_metrics(sglang, "sglang:")
    assert s["sglang:cached_tokens_total"] == 42.0  # device + host
    d = delta({}, s)
    assert d["sglang:queue_time_seconds_mean"] == 0.05


def _server(routes):
    """A local HTTP server: ``routes[(method, path)]`` is a list of (status, body) answered in turn (the last repeats)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            asked.append((self.command, self.path))
            answers = routes.get((self.command, self.path), [(404, {})])
            status, body = answers.pop(0) if len(answers) > 1 else answers[0]
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}", asked


def _sglang_target(base):
    from perfgate.engines import ModelRef, get_adapter
    from perfgate.engines.pool import Target
    from perfgate.schema.result import EngineInfo

    return Target(base, ModelRef("m", "m"), EngineInfo(name="sglang", version="0.5.23"),
                  capabilities=get_adapter("sglang").capabilities)


def test_sglang_flush_cache_refused_while_busy_is_retried_then_reported():
    import pytest

    from perfgate.measure.trial import reset_prefix_cache
    from perfgate.measure.workload import WorkloadError

    httpd, base, asked = _server({("POST", "/flush_cache"): [(400, {}), (400, {}), (200, {})]})
    try:  # busy twice (the last requests finishing), then flushed
        assert reset_prefix_cache(_sglang_target(base), waits=(0.01, 0.01, 0.01)) is True
        assert asked.count(("POST", "/flush_cache")) == 3
    finally:
        httpd.shutdown()
    httpd, base, asked = _server({("POST", "/flush_cache"): [(400, {})]})
    try:  # busy for good: bounded, then the refusal stands
        with pytest.raises(WorkloadError, match=r"answered HTTP 400 after 3 tries \(busy: requests still running\)"):
            reset_prefix_cache(_sglang_target(base), waits=(0.01, 0.01))
        assert asked.count(("POST", "/flush_cache")) == 3
    finally:
        httpd.shutdown()
    httpd, base, asked = _server({("POST", "/flush_cache"): [(500, {})]})
    try:  # any other refusal is not retried
        with pytest.raises(WorkloadError, match=r"answered HTTP 500: prefix cache not reset"):
            reset_prefix_cache(_sglang_target(base), waits=(0.01, 0.01))
        assert len(asked) == 1
    finally:
        httpd.shutdown()


def test_sglang_version_from_server_info_and_from_the_old_route():
    from perfgate._http import probe_version
    from perfgate.engines import get_adapter

    paths = get_adapter("sglang").version_paths()
    new, base, asked = _server({("GET", "/server_info"): [(200, {"version": "0.5.23"})]})
    try:
        assert probe_version(base, paths) == "0.5.23" and asked == [("GET", "/server_info")]
    finally:
        new.shutdown()
    old, base, asked = _server({("GET", "/get_server_info"): [(200, {"version": "0.4.9"})]})
    try:
        assert probe_version(base, paths) == "0.4.9"
        assert asked[:2] == [("GET", "/server_info"), ("GET", "/get_server_info")]
    finally:
        old.shutdown()
