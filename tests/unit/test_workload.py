"""Exact-length prompts: exact for every target, cheap in /tokenize calls, seeded."""

import random
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from perfgate.engines.tinymodel import ensure_tiny_model
from perfgate.measure.workload import WorkloadError, _PromptSizer, exact_prompt, prepare
from perfgate.schema.result import Workload

RECIPE = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "tiny-llama.yaml"


@pytest.fixture(scope="module")
def count(tmp_path_factory):
    tok = Tokenizer.from_file(str(ensure_tiny_model(RECIPE, tmp_path_factory.mktemp("m")) / "tokenizer.json"))
    calls = {"n": 0}

    def f(text: str) -> int:
        calls["n"] += 1
        return len(tok.encode(text).ids)  # BOS included, like vLLM's /tokenize

    f.calls = calls
    return f


@pytest.mark.parametrize("target", [2, 3, 10, 32, 100, 1024])
def test_exact_token_counts(count, target):
    assert count(exact_prompt(count, target, random.Random(target))) == target


def test_sizer_learns_and_gets_cheap(count):
    sizer = _PromptSizer(count)
    rng = random.Random(1)
    sizer(256, rng)
    before = count.calls["n"]
    prompts = [sizer(256, rng) for _ in range(20)]
    per_prompt = (count.calls["n"] - before) / 20
    assert all(count(p) == 256 for p in prompts)
    assert per_prompt < 8  # bisection alone needs ~11


def test_unreachable_target_is_a_clear_error(count):
    with pytest.raises(WorkloadError, match="template alone is 1 tokens"):
        exact_prompt(count, 1, random.Random(0))


def test_prepare_is_seeded_and_differs_per_trial(count):
    w = Workload(scenario="s", num_requests=3, prompt_tokens=20, max_tokens=4, concurrency=1, warmup_requests=1, seed=5)
    a = prepare(w, "m", count, trial=0)
    b = prepare(w, "m", count, trial=0)
    c = prepare(w, "m", count, trial=1)
    assert [s.body for s in a.specs] == [s.body for s in b.specs]
    assert [s.body for s in a.specs] != [s.body for s in c.specs]
    assert len({s.body for s in a.specs + a.warmup}) == 4  # no two requests share a prompt


def test_a_warmup_can_be_shorter_than_the_measured_requests(count):
    """warmup_max_tokens (an A/B's ab_warmup_max_tokens): the warm-up only has to carry the engine past its
    resume transient; the measured requests keep max_tokens."""
    import json

    w = Workload(scenario="s", num_requests=2, prompt_tokens=20, max_tokens=64, concurrency=1, warmup_requests=2,
                 seed=5, warmup_max_tokens=8)
    p = prepare(w, "m", count)
    assert [json.loads(s.body)["max_tokens"] for s in p.warmup] == [8, 8]
    assert [json.loads(s.body)["max_tokens"] for s in p.specs] == [64, 64]
    plain = prepare(w.model_copy(update={"warmup_max_tokens": None}), "m", count)
    assert [json.loads(s.body)["max_tokens"] for s in plain.warmup] == [64, 64]
