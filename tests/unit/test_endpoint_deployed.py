"""Endpoints as deployed (behind KServe, an ingress, N replicas, a rate limiter), against the real sim on loopback.

Each test starts the sim the way someone else's deployment would be started
(its own process, a free port) with the fault or layout under test, and drives
it with ``perfgate load`` or :func:`run_trial`; nothing of HTTP is mocked.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from external_sim import external_sim, free_port

from perfgate._http import probe_version
from perfgate.cli import main
from perfgate.config.matrix import EngineConfig, ScenarioFile, expand_sweep
from perfgate.engines import ModelRef, get_adapter
from perfgate.engines.endpoint import (
    EndpointAuth,
    EndpointError,
    EndpointOptions,
    endpoint_auth,
    metrics_note,
)
from perfgate.engines.pool import Target
from perfgate.engines.server import EngineServer
from perfgate.measure.engine_metrics import scrape
from perfgate.measure.trial import run_trial
from perfgate.schema.result import EngineInfo, Result

ROOT = Path(__file__).resolve().parents[2]
MODEL = "org/served-model"


def sim(*flags: str):
    """A sim started by someone else (not perfgate's pool); its URL."""
    return external_sim(*flags, model=MODEL, itl_ms="2", without_proxy_env=True)


def _load(url: str, out: Path, *args: str) -> tuple[int, Result]:
    rc = main(["load", url, "--num-requests", "8", "--concurrency", "2", "--prompt-tokens", "8", "--out", str(out),
               *args])
    return rc, Result.model_validate_json(next((out / "results").glob("*.result.json")).read_text())


def _target(url: str, **kw) -> Target:
    return Target(url, ModelRef(MODEL, MODEL), EngineInfo(name="external", base_url=url), **kw)


def _scenario(**kw):
    spec = dict(name="dep", num_requests=8, prompt_tokens=8, max_tokens=8, concurrency=2, seed=1,
                max_coalesced_fraction=1.0)  # a busy 2-core box reads events together; not what is tested
    spec.update(kw)
    return expand_sweep(ScenarioFile(**spec))[0]


# -- delivery nothing could verify -----------------------------------------------------------------------------


def test_no_usage_and_half_the_tokens_is_not_delivered(tmp_path, capsys):
    """The lying endpoint of issue 18: no usage block, stops at half of max_tokens despite ignore_eos. It
    passed as ok, exit 0, "Total input tokens: 0"; now the text is counted (the endpoint's /tokenize)."""
    with sim("--fault", "no-usage", "--eos-after", "8") as url:
        rc, result = _load(url, tmp_path / "short", "--max-tokens", "16")
        ok_rc, honest = _load(url, tmp_path / "full", "--max-tokens", "8")  # 8 of 8: no usage, but delivered
    table = capsys.readouterr().out
    assert rc == 1 and result.status == "workload_not_delivered"
    d = result.delivery
    assert (d.short_outputs, d.output_retokenized, d.prompt_counted, d.unverified) == (8, 8, 8, False)
    assert "8 counted from the returned text, the endpoint sent no usage" in result.failure_reason
    assert all(r.output_tokens == 8 and r.output_tokens_source == "tokenizer" for r in result.requests)
    assert all(r.prompt_tokens == 8 and r.prompt_tokens_source == "tokenizer" for r in result.requests)
    assert "Total input tokens:                      64" in table  # was 0
    assert ok_rc == 0 and honest.status in ("ok", "client_bound") and honest.delivery.delivered


# -- a non-event-stream answer -------------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["raw", "aiohttp"])
@pytest.mark.parametrize("kind, ctype, first", [("html", "text/html", "b'<html><head><title>Sign in"),
                                                ("json", "application/json", "b'{\"id\": \"perfgate-")])
def test_a_body_that_is_not_an_event_stream_names_its_content_type(tmp_path, client, kind, ctype, first):
    with sim("--fault", f"not-sse:{kind}") as url:
        rc, result = _load(url, tmp_path, "--max-tokens", "4", "--http-client", client)
    assert rc == 1 and result.status == "failed" and result.fault == "server error"
    assert f"first: protocol: expected text/event-stream, got {ctype} (200): {first}" in result.failure_reason


# -- throttling -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault, kind", [("http-429:0.25", "http_429"), ("http-503:0.25", "http_503")])
def test_throttling_is_a_rate_under_each_policy(tmp_path, fault, kind):
    with sim("--fault", fault) as url:
        counted = run_trial(_target(url, throttle="count"), _scenario(), trial=0, test_id="count",
                            results_dir=tmp_path)
        retried = run_trial(_target(url, throttle="retry"), _scenario(), trial=0, test_id="retry",
                            results_dir=tmp_path)
        failed = run_trial(_target(url, throttle="fail"), _scenario(), trial=0, test_id="fail", results_dir=tmp_path)
    assert counted.status in ("ok", "client_bound") and counted.summary.errors == {kind: 2}
    assert counted.summary.metrics["throttled_rate"] == 0.25 and counted.summary.metrics["success_rate"] == 0.75
    # retry: every request got through in the end; the throttled attempts are counted on the requests
    assert retried.summary.failed == 0 and retried.summary.metrics["throttled_rate"] == 0.0
    assert retried.summary.metrics["throttled_retries"] == sum(r.throttled_attempts for r in retried.requests) > 0
    assert failed.status == "failed" and failed.fault == "throttled"
    assert failed.failure_reason.startswith(f"throttled: 2 of 8 requests failed ({kind} 2)")


def test_a_trial_where_nothing_got_through_fails_under_count(tmp_path):
    with sim("--fault", "http-429:after=0") as url:
        result = run_trial(_target(url, throttle="count"), _scenario(), trial=0, test_id="all", results_dir=tmp_path)
    assert result.status == "failed" and result.fault == "throttled" and "all 8 requests failed" in result.failure_reason


# -- KServe's routes, replicas, headers -------------------------------------------------------------------------


def test_kserve_layout_replicas_and_extra_headers(tmp_path, capsys):
    opts = EndpointOptions(preset="kserve")
    assert opts.bases("https://h/openai") == ("https://h/openai", "https://h")
    assert opts.bases("https://h") == ("https://h/openai", "https://h")
    assert EndpointOptions(server_url="https://m:9090/").bases("https://h/x") == ("https://h/x", "https://m:9090")
    key = "k-" + os.urandom(6).hex()
    with sim("--openai-prefix", "/openai", "--api-key", key) as url:
        # Without the preset, /metrics is looked for under /openai: one visible line, not silence.
        assert metrics_note(url + "/openai", {"Authorization": f"Bearer {key}"}).startswith(
            f"no /metrics at {url}/openai/metrics (HTTP 404): server_metrics stay empty")
        # Every route wants the key; given as an extra header it is on /v1/models, /tokenize, /version, /metrics
        # and the load itself.
        rc, result = _load(url, tmp_path / "kserve", "--preset", "kserve", "--header", f"Authorization: Bearer {key}",
                           "--max-tokens", "4")
    assert rc == 0 or result.status == "client_bound", result.failure_reason
    assert result.workload.prompt_tokens_verified and result.environment.engine.version == "sim-1"
    assert result.server_metrics and result.server_metrics_note is None
    with sim("--fault", "replicas:2") as url:
        result = run_trial(_target(url), _scenario(), trial=0, test_id="replicas", results_dir=tmp_path)
    assert result.server_metrics == {}
    assert result.server_metrics_note.startswith("the before and after /metrics scrapes came from different processes")


def test_token_is_re_read_and_may_come_from_a_file(tmp_path):
    env = {"TOK": "first"}
    auth = endpoint_auth("TOK", env)
    env["TOK"] = "second"
    auth.refresh()
    assert auth.headers() == {"Authorization": "Bearer second"}
    env["TOK"] = ""  # a variable that went empty keeps the last good value (the endpoint then says 401)
    auth.refresh()
    assert auth.headers() == {"Authorization": "Bearer second"}
    token = tmp_path / "token"
    token.write_text("from-file\n")
    env["TOK"] = f"@{token}"
    auth = endpoint_auth("TOK", env)
    assert auth.headers() == {"Authorization": "Bearer from-file"}
    token.write_text("rotated\n")
    auth.refresh()
    assert auth.headers() == {"Authorization": "Bearer rotated"} and "rotated" not in repr(auth)
    env["TOK"] = f"@{tmp_path / 'missing'}"
    with pytest.raises(EndpointError, match=r"^\$TOK names a token file that cannot be read"):
        endpoint_auth("TOK", env)
    assert isinstance(auth, EndpointAuth)


def test_a_malformed_header_is_refused_in_one_line(capsys):
    rc = main(["load", "http://127.0.0.1:9", "--header", "no colon here"])
    err = capsys.readouterr().err
    assert rc != 0 and len(err.strip().splitlines()) == 1
    assert "header 'no colon here': give 'Name: value'" in err


# -- one HTTP path: loopback never through a proxy --------------------------------------------------------------


def test_a_dead_proxy_in_the_environment_does_not_stand_between_perfgate_and_loopback(tmp_path, monkeypatch):
    dead = free_port()  # nothing listens there
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{dead}")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    cfg = EngineConfig(id="sim", kind="sim", boot_timeout_s=20, flags=("--ttft-base-ms", "2", "--itl-ms", "2"))
    server = EngineServer(get_adapter("sim"), cfg, ModelRef("sim", "sim"), Path(sys.executable),
                          tmp_path / "sim.log").start()  # readiness and the first generation: urllib
    try:
        assert probe_version(server.base_url) is not None
        assert scrape(server.base_url) is not None  # /metrics
        result = run_trial(Target(server.base_url, ModelRef("sim", "sim"), EngineInfo(name="sim")),
                           _scenario(), trial=0, test_id="proxied", results_dir=tmp_path)
    finally:
        server.stop()
    assert result.summary.failed == 0 and result.server_metrics
