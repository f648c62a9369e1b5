"""Workload shapes, load shapes, delivery checks and saturation: pure parts, against hand-built truth."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perfgate.config.matrix import (
    LengthDist,
    MatrixError,
    ScenarioFile,
    expand_sweep,
    load_scenario_file,
)
from perfgate.judge.baselines import _workload_identity, load_baseline
from perfgate.measure.datasets import draw_lengths, load_sharegpt, prepare_shaped
from perfgate.measure.delivery import check_delivery
from perfgate.measure.loadgen import arrival_offsets, ramp_offsets
from perfgate.measure.saturation import (
    should_stop,
    slo_misses,
    step_scenario,
    step_usable,
    summarize_saturation,
)
from perfgate.measure.workload import WorkloadError
from perfgate.schema.result import RequestRecord, SaturationStep, Workload
from perfgate.schema.verdict import case_status

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "fixtures" / "scenarios"
DATASET = ROOT / "fixtures" / "datasets" / "sharegpt-synthetic.json"


def words(text: str) -> int:
    """The reference engine's tokenizer (docs/sim.md): whitespace-separated words."""
    return len(text.split())


def scenario(tmp_path: Path, **fields):
    base = dict(name="s", num_requests=12, max_tokens=8, concurrency=2, warmup_requests=0, seed=3)
    base.update(fields)
    return expand_sweep(ScenarioFile(**base), tmp_path)[0]


# -- scenario fields -----------------------------------------------------------------------------


@pytest.mark.parametrize("fields, message", [
    (dict(prompt_tokens=8, input_len={"dist": "fixed", "value": 8}), "not both"),
    (dict(), "give `prompt_tokens`"),
    (dict(prompt_tokens=8, shared_prefix_groups=2), "both `shared_prefix_groups`"),
    (dict(prompt_tokens=8, shared_prefix_groups=2, shared_prefix_tokens=8), "must be below the prompt length"),
    (dict(prompt_tokens=8, turns=2), "need `api: chat`"),
    (dict(prompt_tokens=8, ramp_to_rate=4.0), "give `request_rate`"),
    (dict(input_len={"dist": "uniform", "low": 9, "high": 3}), "low 9 > high 3"),
    (dict(input_len={"dist": "normal", "mean": 9}), "needs std"),
    (dict(input_len={"dist": "dataset"}), "needs a `dataset`"),
    (dict(prompt_tokens=8, concurrency=None, request_rate=1.0, saturation={"start_rate": 1.0}), "at least one SLO"),
    (dict(prompt_tokens=8, concurrency=None, request_rate=1.0, slo_ttft_ms=9,
          saturation={"start_rate": 1.0, "rates": [1.0]}), "exactly one of `rates`"),
    (dict(prompt_tokens=8, concurrency=None, request_rate=1.0, slo_ttft_ms=9,
          saturation={"rates": [2.0, 1.0]}), "ascending"),
])
def test_bad_shape_fields_are_clear_errors(fields, message):
    base = dict(name="s", num_requests=2, max_tokens=4, concurrency=1)
    base.update(fields)
    with pytest.raises(ValueError, match=message):
        ScenarioFile(**base)


def test_missing_dataset_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nnum_requests: 2\nmax_tokens: 4\nconcurrency: 1\ndataset: nope.json\n")
    with pytest.raises(MatrixError, match=r"s.yaml: dataset: no file 'nope.json'"):
        load_scenario_file(path)


def test_shipped_baselines_keep_their_fingerprint():
    """Fields added to Workload stay out of the fingerprint while unused: stored baselines still match."""
    for path in sorted((ROOT / "baselines").rglob("*.json")):
        b = load_baseline(path)
        sc = load_scenario_file(SCENARIOS / f"{b.key.scenario}.yaml")[0]
        assert json.dumps(_workload_identity(sc.workload()), sort_keys=True) == b.fingerprint["workload"], path


def test_new_scenarios_load_and_shape_their_workload():
    sp = load_scenario_file(SCENARIOS / "cpu-shared-prefix.yaml")[0]
    w = sp.workload()
    assert sp.shaped and (w.shared_prefix_groups, w.shared_prefix_tokens, w.prefix_cache) == (4, 384, "reset_between_trials")
    ds = load_scenario_file(SCENARIOS / "cpu-dataset.yaml")[0]
    assert ds.workload().dataset_sha256 and ds.workload().prompt_tokens == 0
    assert load_scenario_file(SCENARIOS / "cpu-saturation.yaml")[0].spec.saturation.step_rates()[:3] == [2.0, 3.0, 4.5]


# -- datasets ------------------------------------------------------------------------------------


def test_shipped_dataset_is_what_its_recipe_makes(tmp_path):
    out, jsonl = tmp_path / "d.json", tmp_path / "d.jsonl"
    subprocess.run([sys.executable, str(ROOT / "fixtures" / "make_sharegpt_synthetic.py"), "--out", str(out),
                    "--jsonl", str(jsonl)], check=True, capture_output=True)
    assert out.read_bytes() == DATASET.read_bytes()
    assert load_sharegpt(jsonl) == load_sharegpt(DATASET)  # JSONL reads the same entries


def test_sharegpt_reader_pairs_turns_and_skips_system_and_empty(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(
        json.dumps({"conversations": [{"from": "system", "value": "be nice"}, {"from": "human", "value": "q1"},
                                      {"from": "gpt", "value": "a1"}, {"from": "user", "value": "q2"}]}) + "\n\n"
        + json.dumps({"conversations": [{"from": "gpt", "value": "orphan"}]}) + "\n")
    convs = load_sharegpt(path)
    assert [c.turns for c in convs] == [(("q1", "a1"), ("q2", ""))]


@pytest.mark.parametrize("text, message", [
    ('{"conversations": []}\nnot json\n', "line 2: not JSON"),
    ('{"turns": []}\n', "line 1: not a ShareGPT entry"),
    ('{"conversations": [{"from": "human"}]}\n', "needs string `from` and `value`"),
    ('{"conversations": [{"from": "gpt", "value": "x"}]}\n', "no conversation with a human turn"),
])
def test_bad_dataset_lines_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(WorkloadError, match=message):
        load_sharegpt(path)


def test_length_distributions():
    rng = random.Random(0)
    assert draw_lengths(LengthDist(dist="fixed", value=7), 3, rng) == [7, 7, 7]
    u = draw_lengths(LengthDist(dist="uniform", low=5, high=9), 2000, rng)
    assert min(u) == 5 and max(u) == 9 and abs(np.mean(u) - 7) < 0.1
    n = draw_lengths(LengthDist(dist="normal", mean=50, std=10, low=40, high=70), 4000, rng)
    assert min(n) == 40 and max(n) <= 70 and 50 < np.mean(n) < 53  # clipped below at 40 (-1 sd)
    assert abs(np.std(draw_lengths(LengthDist(dist="normal", mean=500, std=20), 4000, rng)) - 20) < 1.5


# -- builders (counted with the reference engine's word tokenizer) ----------------------------------


def _prompts(prepared):
    return [json.loads(s.body)["prompt"] for s in prepared.specs]


def test_shared_prefix_groups_share_exact_prefixes(tmp_path):
    sc = scenario(tmp_path, prompt_tokens=40, shared_prefix_groups=3, shared_prefix_tokens=30, warmup_requests=2)
    prep = prepare_shaped(sc, sc.workload(), "m", words, trial=0)
    prompts = _prompts(prep)
    assert all(words(p) == 40 for p in prompts)
    prefixes = [" ".join(p.split()[:30]) for p in prompts]
    assert len(set(prefixes)) == 3 and all(prefixes[i] == prefixes[i % 3] for i in range(12))
    assert len({" ".join(p.split()[30:]) for p in prompts}) == 12  # every suffix unique
    assert prep.expected == {i: (40, 8) for i in range(12)}
    warm = {" ".join(json.loads(s.body)["prompt"].split()[:30]) for s in prep.warmup}
    assert not warm & set(prefixes)  # warm-up never caches the measured prefixes
    again = prepare_shaped(sc, sc.workload(), "m", words, trial=1)
    assert not set(_prompts(again)) & set(prompts)  # trials draw new prefixes


def test_length_distributions_reach_the_bodies(tmp_path):
    sc = scenario(tmp_path, input_len={"dist": "uniform", "low": 10, "high": 30}, max_tokens=None,
                  output_len={"dist": "normal", "mean": 20, "std": 5, "low": 4})
    prep = prepare_shaped(sc, sc.workload(), "m", words)
    bodies = [json.loads(s.body) for s in prep.specs]
    assert [(words(b["prompt"]), b["max_tokens"]) for b in bodies] == [prep.expected[i] for i in range(12)]
    assert len({b["max_tokens"] for b in bodies}) > 3 and all(10 <= words(b["prompt"]) <= 30 for b in bodies)


def test_dataset_prompts_and_reply_lengths(tmp_path):
    sc = scenario(tmp_path, api="chat", dataset=str(DATASET), input_len={"dist": "dataset"}, max_tokens=None,
                  output_len={"dist": "dataset"})
    prep = prepare_shaped(sc, sc.workload(), "m", words)
    firsts = {c.turns[0][0]: words(c.turns[0][1]) for c in load_sharegpt(DATASET)}
    for s in prep.specs:
        body = json.loads(s.body)
        text = body["messages"][0]["content"]
        assert firsts[text] == body["max_tokens"] == prep.expected[s.index][1]
        assert prep.expected[s.index][0] == words(text)


def test_multi_turn_requests_carry_the_history(tmp_path):
    sc = scenario(tmp_path, api="chat", turns=3, prompt_tokens=12, num_requests=9)
    prep = prepare_shaped(sc, sc.workload(), "m", words)
    msgs = [json.loads(s.body)["messages"] for s in prep.specs]
    assert [len(m) for m in msgs] == [1] * 3 + [3] * 3 + [5] * 3  # turn-major, history included
    for c in range(3):
        t1, t2, t3 = msgs[c], msgs[3 + c], msgs[6 + c]
        assert t2[:1] == t1 and t3[:3] == t2 and t2[1]["role"] == "assistant"
    assert all(words(m[-1]["content"]) == 12 for m in msgs)


# -- load shapes ---------------------------------------------------------------------------------


def test_ramp_offsets_follow_the_linear_rate():
    """Expected arrivals by t are Λ(t) = r0·t + (r1 − r0)·t²/(2T): 150 in [0, 50) and 350 in [50, 100) here."""
    first, second = [], []
    for seed in range(100):
        o = ramp_offsets(1000, 1.0, 9.0, 100.0, 1.0, seed)
        first.append(np.sum(o < 50))
        second.append(np.sum((o >= 50) & (o < 100)))
    assert abs(np.mean(first) - 151) < 3 and abs(np.mean(second) - 350) < 5  # the first request goes at 0
    o = ramp_offsets(50, 2.0, 2.0, 10.0, 1.0, 7)
    assert np.allclose(o, arrival_offsets(50, 2.0, 1.0, 7))  # a flat ramp is the plain schedule
    after = ramp_offsets(3000, 1.0, 5.0, 10.0, 1.0, 1)
    assert abs(np.sum((after >= 10) & (after < 410)) / 400 - 5.0) < 0.3  # the rate stays at r1 after the ramp


# -- delivery ------------------------------------------------------------------------------------


def rec(i, out=16, prompt=32, chunks=16, coalesced=0, source="usage", **kw):
    return RequestRecord(index=i, sent_at_s=0.0, output_tokens=out, prompt_tokens=prompt, chunks=chunks,
                         coalesced_events=coalesced, output_tokens_source=source, **kw)


W = Workload(scenario="s", num_requests=4, prompt_tokens=32, max_tokens=16)


def test_delivery_ok_and_each_violation():
    assert check_delivery([rec(i) for i in range(4)], W).delivered
    d = check_delivery([rec(0, out=9), rec(1)], W)
    assert (d.delivered, d.short_outputs) == (False, 1) and "ignored ignore_eos" in d.reason
    d = check_delivery([rec(0, prompt=33), rec(1)], W)  # 1 token off 32 is over 2%
    assert d.prompt_mismatches == 1 and not d.delivered
    assert check_delivery([rec(0, prompt=33)], W, prompt_tolerance=0.05).delivered
    d = check_delivery([rec(0, coalesced=14), rec(1)], W)  # 14 of 30 gaps: within 50%
    assert d.delivered and (d.coalesced_events, d.token_gaps) == (14, 30)
    d = check_delivery([rec(0, coalesced=8)], W)  # 8 of 15: over 50%
    assert not d.delivered and "in one read" in d.reason
    assert not check_delivery([rec(0)], W, pool_exhausted=True).delivered


def test_delivery_skips_what_it_cannot_know():
    d = check_delivery([rec(0, out=15, source="tokenizer"), rec(1, error="timeout", out=1)], W)
    assert d.delivered and (d.output_retokenized, d.checked_requests) == (1, 1)  # re-counted: within 10%
    d = check_delivery([rec(0, out=8, source="tokenizer")], W)  # half of max_tokens, counted from the text
    assert not d.delivered and d.short_outputs == 1 and "counted from the returned text" in d.reason
    d = check_delivery([rec(0, out=8, source="chunks"), rec(1)], W)  # nothing could count it
    assert not d.delivered and d.unverified and d.output_unchecked == 1 and "unverified" in d.reason
    d = check_delivery([rec(0, prompt=None)], W)
    assert d.delivered and d.prompt_unchecked == 1
    d = check_delivery([rec(0, prompt=99, prompt_tokens_source="tokenizer")], W)  # perfgate's own count
    assert d.delivered and (d.prompt_counted, d.prompt_mismatches) == (1, 0)
    no_eos = W.model_copy(update={"ignore_eos": False})
    assert check_delivery([rec(0, out=3)], no_eos).delivered
    shaped = [rec(0, prompt=50, out=7, requested_prompt_tokens=50, requested_max_tokens=7),
              rec(1, prompt=99, requested_prompt_tokens=None, requested_max_tokens=16)]
    d = check_delivery(shaped, W, per_request=True)
    assert d.delivered and d.prompt_unchecked == 1


def test_case_status_precedence():
    assert case_status(error=None, trial_statuses=["ok", "workload_not_delivered"], judgement=None) \
        == "workload_not_delivered"
    assert case_status(error=None, trial_statuses=["client_bound", "workload_not_delivered"], judgement=None) \
        == "client_bound"
    assert case_status(error=None, trial_statuses=["ok"], judgement=None, slo_violated=True) == "slo_violated"
    assert case_status(error=None, trial_statuses=["workload_not_delivered"], judgement=None,
                       slo_violated=True) == "workload_not_delivered"


# -- saturation ----------------------------------------------------------------------------------


def step(rate, goodput, within=True, status="ok"):
    return SaturationStep(rate=rate, test_id="t", status=status, goodput=goodput, within_slo=within)


def test_saturation_stop_rule_and_answer():
    steps = [step(1, 1.0), step(2, 2.0), step(4, 3.9)]
    assert should_stop(steps, 0.05, 1) is None
    steps.append(step(8, 4.0, within=False))  # +2.6%: not a rise
    assert "stopped rising" in should_stop(steps, 0.05, 1)
    assert should_stop(steps, 0.05, 2) is None  # patience 2 waits one more step
    assert "client_bound" in should_stop([step(1, 1.0, status="client_bound")], 0.05, 1)
    # a trial failed on a few refused requests (<= 1%) is still a point of the curve; more is overload
    few = SaturationStep(rate=2, test_id="t", status="failed", goodput=2.0, within_slo=True, error_rate=0.005,
                         completed=199)
    many = few.model_copy(update={"error_rate": 0.2})
    assert step_usable(few) and not step_usable(many)
    assert should_stop([step(1, 1.0), few], 0.05, 1) is None
    assert "failed" in should_stop([step(1, 1.0), many], 0.05, 1)
    res = summarize_saturation(steps + [step(16, 5.0)], test_id="t", scenario="s", engine="e", model="m")
    assert (res.max_sustained_rate, res.peak_goodput) == (4, 5.0)  # below the first step that misses an SLO
    assert summarize_saturation([step(1, 0.5, within=False)], test_id="t", scenario="s", engine="e",
                                model="m").max_sustained_rate is None


def test_slo_misses_and_step_scenario(tmp_path):
    assert slo_misses({"ttft_ms.p99": 100.0, "tpot_ms.p99": 20.0}, 100.0, 19.0, None) == ["p99 TPOT 20.0 ms > 19 ms"]
    assert slo_misses({}, None, None, 5.0) == ["no p99 e2e"]
    sc = scenario(tmp_path, prompt_tokens=8, concurrency=None, request_rate=1.0, slo_ttft_ms=100,
                  saturation={"rates": [2.0, 4.0], "step_duration_s": 5})
    st = step_scenario(sc, 4.0)
    assert st.name == "s[request_rate=4]" and st.spec.duration_s == 5 and st.spec.num_requests == 34
    assert st.spec.saturation is None and st.spec.trial.trials == 1


def test_assert_slo_uses_the_median_trial(tmp_path):
    from perfgate.measure.saturation import assert_slo_line
    from perfgate.schema.result import Summary

    sc = scenario(tmp_path, prompt_tokens=8, slo_ttft_ms=100, assert_slo=True)

    class R:  # the two fields assert_slo_line reads
        def __init__(self, p99):
            self.summary = Summary(completed=1, failed=0, duration_s=1, metrics={"ttft_ms.p99": p99})

    assert assert_slo_line([R(90), R(400), R(95)], sc) is None  # one bad trial of three
    assert assert_slo_line([R(120), R(400), R(95)], sc) == \
        "SLO violated (median of 3 trials): p99 TTFT 120.0 ms > 100 ms"
