"""Workload and load shapes end to end against the reference engine (perfgate sim), whose behaviour is known.

The simulator starts through the real engine lifecycle; its faults (--eos-after,
--coalesce) and its capacity (--max-running) are exact, so the delivered-workload
checks and the saturation search are tested against known truth.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from perfgate.config.matrix import (
    Case,
    EngineConfig,
    ModelSpec,
    ScenarioFile,
    expand_sweep,
)
from perfgate.engines import ModelRef, get_adapter
from perfgate.engines.pool import Target
from perfgate.engines.server import EngineServer
from perfgate.measure.trial import run_trial
from perfgate.report import render_report
from perfgate.report.data import gather
from perfgate.schema.result import EngineInfo, read_saturation, saturation_path
from perfgate.session import PerfSession, Settings


@contextmanager
def _booted(tmp_path_factory, *flags: str):
    """(target, its results directory) of a sim with these extra flags, stopped on the way out."""
    # ITL 10 ms: slow enough that a busy 2-core box does not coalesce reads by itself (it does at 2 ms)
    cfg = EngineConfig(id="sim", kind="sim", boot_timeout_s=30, flags=("--ttft-base-ms", "20", "--itl-ms", "10", *flags))
    out = tmp_path_factory.mktemp("sim")
    server = EngineServer(get_adapter("sim"), cfg, ModelRef("sim", "sim"), Path(sys.executable), out / "sim.log").start()
    try:
        yield Target(server.base_url, ModelRef("sim", "sim"), EngineInfo(name="sim", version=server.version), server), out
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with _booted(tmp_path_factory) as booted:
        yield booted


def _run(target, out, name, client_bound_reruns=0, **kw):
    spec = dict(name=name, num_requests=12, prompt_tokens=20, max_tokens=16, concurrency=3, warmup_requests=0, seed=1)
    spec.update(kw)
    return run_trial(target, expand_sweep(ScenarioFile(**spec), out)[0], trial=0, test_id=name, results_dir=out,
                     client_bound_reruns=client_bound_reruns)


# A client-bound trial (the busy box stalled the load client) outranks workload_not_delivered; it is run again,
# as the suite does, so that the status names the engine's fault. The sim's faults are exact and survive a rerun.
RERUNS = 3


def _truth(target):
    with urllib.request.urlopen(target.base_url + "/sim/truth") as r:
        return json.loads(r.read())


def test_delivered_workload_passes_its_checks(sim):
    target, out = sim
    r = _run(target, out, "ok", prompt_tokens=40, shared_prefix_groups=2, shared_prefix_tokens=30)
    assert r.delivery.delivered, r.delivery.reason
    assert r.delivery.checked_requests == 12 and r.delivery.prompt_mismatches == r.delivery.short_outputs == 0
    assert all(q.requested_prompt_tokens == q.prompt_tokens == 40 for q in r.requests)


def test_engine_that_stops_early_is_not_delivered(tmp_path_factory):
    with _booted(tmp_path_factory, "--eos-after", "5") as (target, out):
        r = _run(target, out, "eos", client_bound_reruns=RERUNS)
    assert r.status == "workload_not_delivered" and not r.delivery.delivered, r.failure_reason
    assert r.failure_reason == r.delivery.reason
    assert r.delivery.short_outputs == 12 and "stopped early or ignored ignore_eos" in r.delivery.reason
    assert all(q.output_tokens == 5 for q in r.requests)  # the usage count, as the engine reported it


def test_coalesced_events_are_counted_and_flag_the_trial(tmp_path_factory):
    with _booted(tmp_path_factory, "--coalesce", "4") as (target, out):
        r = _run(target, out, "coalesce", concurrency=1, num_requests=4, client_bound_reruns=RERUNS)
        truth = _truth(target)
    # 16 chunks written 4 at a time: 3 of every 4 events share the previous one's read (12 of 15 gaps)
    written = [c["written"] for c in truth["perfgate-0"]["chunks"]]
    assert len(set(written)) == 4
    assert r.status == "workload_not_delivered" and "in one read" in r.delivery.reason, r.failure_reason
    assert r.delivery.coalesced_events >= 4 * 12 * 0.9 and r.delivery.token_gaps == 4 * 15


def test_duration_run_sends_only_inside_the_window(sim):
    target, out = sim
    r = _run(target, out, "dur", concurrency=None, request_rate=20.0, num_requests=60, duration_s=1.0)
    assert not r.delivery.pool_exhausted
    sent = [q.sent_at_s for q in r.requests]
    assert 8 <= len(sent) < 60 and max(q.scheduled_at_s for q in r.requests) < 1.0
    short = _run(target, out, "dur-short", concurrency=None, request_rate=20.0, num_requests=5, duration_s=2.0)
    assert short.delivery.pool_exhausted and "ran out of prepared requests" in short.delivery.reason
    closed = _run(target, out, "dur-closed", concurrency=2, num_requests=200, duration_s=0.8)
    # each request takes 20 + 15·10 = 170 ms: two workers send ~2·0.8/0.17 ≈ 10 in the window
    assert 6 <= len(closed.requests) <= 12 and max(q.sent_at_s for q in closed.requests) < 0.8


def test_sim_capacity_queues_requests(tmp_path_factory):
    with _booted(tmp_path_factory, "--max-running", "2") as (target, out):
        r = _run(target, out, "cap", concurrency=4, num_requests=8)
        truth = _truth(target)
    ttft = sorted(q.ttft_ms for q in r.requests)
    # service time 170 ms, 2 slots, 4 users: the first two start at once, every later one waits a service time
    assert ttft[1] < 100 and ttft[2] > 170
    spans = [(c["chunks"][0]["intended"], c["done"]) for k, c in truth.items() if k.startswith("perfgate-")]
    assert max(sum(a <= t < b for a, b in spans) for t, _ in spans) == 2  # never more than 2 generating


def test_saturation_finds_the_known_capacity(tmp_path):
    """Sim with 4 slots and 20 + 15·10 = 170 ms... here 50 + 15·10 = 200 ms a request: capacity 4 / 0.2 = 20 req/s.

    Nearly regular arrivals (burstiness 20): below capacity nothing queues (TTFT = 50 ms), above it the queue
    grows for the whole step. The highest rate within the 120 ms TTFT SLO must be the last step below 20.
    """
    engine = EngineConfig(id="sim-cap", kind="sim", boot_timeout_s=30, flags=(
        "--ttft-base-ms", "50", "--itl-ms", "10", "--max-running", "4"))
    spec = ScenarioFile(name="sat", num_requests=4, prompt_tokens=16, max_tokens=16, request_rate=16.0,
                        burstiness=20.0, warmup_requests=0, seed=5, slo_ttft_ms=120, slo_tpot_ms=15,
                        assert_slo=True, saturation={"rates": [8, 12, 16, 24, 32, 40], "step_duration_s": 3})
    case = Case("cpu", engine, ModelSpec("sim", None, "sim"), expand_sweep(spec)[0])
    session = PerfSession(Settings(results_dir=tmp_path, cache_dir=tmp_path / "cache",
                                   baselines_dir=tmp_path / "b", machine=None))
    try:
        outcome = session.run_case(case)
    finally:
        session.finish()  # releases the engine, writes verdicts.json and the report
    sat = outcome.saturation
    assert sat.max_sustained_rate == 16, sat.model_dump_json(indent=1)
    assert [s.rate for s in sat.steps] == [8, 12, 16, 24]  # goodput fell at 24: the search stopped
    assert all(s.within_slo for s in sat.steps[:3]) and not sat.steps[3].within_slo
    assert 15 < sat.peak_goodput < 17 and "stopped rising" in sat.stopped
    assert outcome.status == "not_judged"  # 16 req/s (the scenario's rate) is within SLO
    assert read_saturation(saturation_path(tmp_path, case.id)) == sat
    html = render_report([tmp_path], tmp_path / "report")[0].read_text()
    assert 'data-saturation="sim-cap-sim-sat"' in html and 'data-chart="saturation"' in html
    # The four step result files are points of the curve, not four more cases; the case links a step's log.
    data = gather([tmp_path], tmp_path / "report")
    assert [c.case_id for c in data.cases] == [case.id] and data.cases[0].log_href
    assert len(list((tmp_path / "results").glob("*.result.json"))) == len(sat.steps) == 4


def test_perfgate_load_runs_every_sweep_point_with_its_trials(sim, tmp_path, capsys):
    from perfgate.cli import main

    target, _ = sim
    path = tmp_path / "sw.yaml"
    path.write_text("name: sw\nnum_requests: 3\nprompt_tokens: 8\nmax_tokens: 4\nwarmup_requests: 0\ntrials: 2\n"
                    "sweep: {concurrency: [1, 2]}\n")
    main(["load", target.base_url, "--model", "sim", "--scenario", str(path), "--out", str(tmp_path / "out")])
    files = sorted(p.name for p in (tmp_path / "out" / "results").glob("*.result.json"))
    assert files == [f"load-sw-concurrency={c}.trial{t}.result.json" for c in (1, 2) for t in (0, 1)]


def test_prefix_cache_reset_refused_is_a_clear_error_and_absent_is_recorded(sim):
    from dataclasses import replace

    from perfgate.engines import EngineCapabilities
    from perfgate.measure.trial import reset_prefix_cache
    from perfgate.measure.workload import WorkloadError

    target, out = sim
    assert reset_prefix_cache(target) is False  # the sim offers no reset: recorded, not an error
    r = _run(target, out, "keep", prompt_tokens=20, prefix_cache="reset_between_trials", num_requests=2)
    assert r.workload.prefix_cache_reset is False
    claims = replace(target, capabilities=EngineCapabilities(cache_reset=("POST", "/reset_prefix_cache")))
    with pytest.raises(WorkloadError, match=r"answered HTTP 404: prefix cache not reset \(vLLM serves it only with"):
        reset_prefix_cache(claims)  # a real 404 from a server without the route


def test_max_concurrency_caps_requests_in_flight(sim):
    target, out = sim
    urllib.request.urlopen(urllib.request.Request(target.base_url + "/sim/reset", data=b"", method="POST")).read()
    r = _run(target, out, "cap-open", concurrency=None, request_rate=50.0, max_concurrency=2, num_requests=10)
    truth = _truth(target)
    spans = [(truth[f"perfgate-{q.index}"]["arrival"], truth[f"perfgate-{q.index}"]["done"]) for q in r.requests]
    assert max(sum(a <= t < b for a, b in spans) for t, _ in spans) == 2


def test_prompts_sized_by_another_tokenizer_are_not_delivered(tmp_path_factory):
    """Prompts sized with a local tokenizer the engine does not share arrive at another length: reported."""
    from perfgate.measure import trial as trial_module

    with _booted(tmp_path_factory, "--no-tokenize") as (sim_target, out):
        url = sim_target.base_url  # reached as an external endpoint: no /tokenize, so the local count is used
        target = Target(url, ModelRef("sim", "sim"), EngineInfo(name="external", base_url=url))
        original = trial_module._local_count_fn
        trial_module._local_count_fn = lambda *a, **k: (lambda text: 2 * len(text.split()))  # not the engine's count
        try:
            r = _run(target, out, "other-tokenizer", prompt_tokens=20, num_requests=3, concurrency=1)
        finally:
            trial_module._local_count_fn = original
    assert not r.delivery.delivered and r.delivery.prompt_mismatches == 3
    assert all(q.prompt_tokens == 10 for q in r.requests)  # the engine saw half the asked length


def test_duration_and_ramp_with_worker_processes(sim):
    """With N client processes the schedule is drawn once (ramped if asked) and the duration cuts each share."""
    target, out = sim
    r = _run(target, out, "dur-workers", concurrency=None, request_rate=10.0, ramp_to_rate=30.0, num_requests=80,
             duration_s=1.5, client_workers=2)
    sched = sorted(q.scheduled_at_s for q in r.requests)
    assert max(sched) < 1.5 and 15 <= len(sched) <= 45  # Λ(1.5) = 1.5 · (10 + 30) / 2 = 30 expected
    assert sum(t < 0.75 for t in sched) < sum(t >= 0.75 for t in sched)  # the rate rises: more in the second half
    assert not r.delivery.pool_exhausted
    # a pool too small for the duration is caught with workers too (the parent draws one request more)
    short = _run(target, out, "dur-workers-short", concurrency=None, request_rate=20.0, num_requests=6,
                 duration_s=2.0, client_workers=2)
    assert short.delivery.pool_exhausted and "ran out of prepared requests" in short.delivery.reason


@pytest.mark.parametrize("stalls", [1, 2])
def test_a_client_bound_trial_is_run_again_once_and_the_last_attempt_stands(sim, monkeypatch, stalls):
    """CLIENT_BOUND_RERUNS: the first ``stalls`` attempts are judged with a stall threshold of -1 ms
    (so any real run is client-bound); one re-run, the engine really served both attempts."""
    import perfgate.measure.trial as trial_mod

    target, out = sim
    judged, real = [], trial_mod.client_health

    def health(*a, **kw):
        judged.append(1)
        return real(*a, **kw, **({"max_loop_lag_ms": -1.0} if len(judged) <= stalls else {}))

    urllib.request.urlopen(urllib.request.Request(target.base_url + "/sim/reset", data=b"", method="POST")).read()
    monkeypatch.setattr(trial_mod, "client_health", health, raising=True)
    name = f"rerun-{stalls}"
    spec = dict(name=name, num_requests=6, prompt_tokens=20, max_tokens=4, concurrency=3, warmup_requests=0, seed=1)
    r = run_trial(target, expand_sweep(ScenarioFile(**spec), out)[0], trial=0, test_id=name, results_dir=out,
                  client_bound_reruns=trial_mod.CLIENT_BOUND_RERUNS)
    assert len(judged) == 2 and len(_truth(target)) == 12  # two attempts of 6 requests, no third
    assert len(r.client_health.earlier_attempts) == 1 and "event-loop stall" in r.client_health.earlier_attempts[0]
    assert r.status == ("ok" if stalls == 1 else "client_bound")
    files = list((out / "results").glob(f"{name}*.result.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["client_health"]["earlier_attempts"]


def test_the_trial_reads_metrics_under_the_adapters_prefix(sim):
    """The trial scrapes /metrics with the target's ``capabilities.metrics_prefix``: the sim's own
    (``vllm:``, it mimics vLLM) finds its histograms; a prefix the engine does not use finds nothing."""
    from dataclasses import replace

    from perfgate.engines import EngineCapabilities

    target, out = sim
    own = _run(replace(target, capabilities=get_adapter("sim").capabilities), out, "prefix-own", num_requests=4)
    assert own.server_metrics["vllm:time_to_first_token_seconds_count"] == 4
    other = replace(target, capabilities=EngineCapabilities(token_ids_in_stream=True, metrics_prefix="sglang:"))
    assert _run(other, out, "prefix-other", num_requests=4).server_metrics == {}
