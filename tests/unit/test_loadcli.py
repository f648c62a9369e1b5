"""`perfgate load` as people use load tools, and the multi-process client, against the reference engine.

One simulator boot for the module (the same lifecycle as real engines). The
simulator's truth is on the same CLOCK_MONOTONIC as every client process, so
requests sent by worker processes can be lined up with what the server saw.
"""

from __future__ import annotations

import json
import math
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from perfgate.cli import main
from perfgate.config.matrix import EngineConfig
from perfgate.engines import ModelRef, get_adapter
from perfgate.engines.server import EngineServer
from perfgate.measure.loadgen import RequestSpec, arrival_offsets, run_load
from perfgate.measure.workers import clock_is_shared, deal, split_evenly
from perfgate.schema.result import Result

# vllm/benchmarks/serve.py (v0.32.0): main()'s result_json header, benchmark()'s result dict without
# --save-detailed's per-request lists, and process_one_metric's keys for ttft, tpot, itl, e2el.
VLLM_KEYS = {
    "date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts", "request_rate",
    "burstiness", "max_concurrency", "duration", "completed", "failed", "total_input_tokens",
    "total_output_tokens", "request_throughput", "request_goodput", "output_throughput", "total_token_throughput",
    "max_output_tokens_per_s", "max_concurrent_requests",
    *(f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el") for s in ("mean", "median", "std", "p50", "p99")),
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    # ITL 10 ms: at 2 ms a busy 2-core box read most events together (coalesced: workload not delivered)
    cfg = EngineConfig(id="sim", kind="sim", boot_timeout_s=30, flags=("--ttft-base-ms", "20", "--itl-ms", "10"))
    server = EngineServer(get_adapter("sim"), cfg, ModelRef("sim", "sim"), Path(sys.executable), out / "sim.log").start()
    yield server.base_url
    server.stop()


def _truth(url):
    with urllib.request.urlopen(url + "/sim/truth") as r:
        return json.loads(r.read())


def _reset(url):
    urllib.request.urlopen(urllib.request.Request(url + "/sim/reset", data=b"", method="POST")).read()


def _result(out: Path) -> Result:
    return Result.model_validate_json(next((out / "results").glob("*.result.json")).read_text())


def test_vllm_flags_table_and_vllm_result_keys_agree_with_perfgate(sim, tmp_path, capsys):
    rc = main(["load", "--base-url", sim, "--num-prompts", "24", "--max-concurrency", "4",  # model from /v1/models
               "--random-input-len", "16", "--random-output-len", "12", "--goodput", "ttft:1000", "tpot:50",
               "--format", "vllm", "--metric-percentiles", "50,99", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert rc == 0
    r = _result(tmp_path)
    w, m = r.workload, r.summary.metrics
    assert (w.num_requests, w.concurrency, w.request_rate, w.prompt_tokens, w.max_tokens) == (24, 4, None, 16, 12)
    for row in ("Successful requests:", "Mean TTFT (ms):", "P99 TPOT (ms):", "Median ITL (ms):", "Mean E2E (ms):",
                "Output token throughput (tok/s):", "Request goodput (req/s):"):
        assert row in printed
    assert f"{m['ttft_ms.mean']:.2f}" in printed and "uvloop" in printed
    doc = json.loads(next((tmp_path / "results").glob("*.vllm.json")).read_text())
    assert set(doc) == VLLM_KEYS
    n = r.summary.completed
    assert doc["completed"] == n == 24 and doc["failed"] == 0 and doc["num_prompts"] == 24
    assert doc["request_rate"] == "inf" and doc["max_concurrency"] == 4
    for vk, pk in (("ttft", "ttft_ms"), ("tpot", "tpot_ms"), ("itl", "itl_ms"), ("e2el", "e2e_ms")):
        assert doc[f"mean_{vk}_ms"] == pytest.approx(m[f"{pk}.mean"])
        assert doc[f"median_{vk}_ms"] == pytest.approx(m[f"{pk}.p50"])
        assert doc[f"p99_{vk}_ms"] == pytest.approx(m[f"{pk}.p99"])
    k = n  # vLLM's std is the population one: sample std * sqrt((n-1)/n)
    assert doc["std_ttft_ms"] == pytest.approx(m["ttft_ms.std"] * math.sqrt((k - 1) / k))
    assert doc["output_throughput"] == pytest.approx(m["output_throughput"])
    assert doc["request_throughput"] == pytest.approx(m["request_throughput"])
    assert doc["total_token_throughput"] == pytest.approx(m["total_token_throughput"])
    assert doc["request_goodput"] == pytest.approx(m["goodput"])
    assert doc["total_output_tokens"] == 24 * 12 and doc["duration"] == pytest.approx(r.summary.duration_s)
    assert 1 <= doc["max_concurrent_requests"] <= 24


@pytest.mark.parametrize("argv, error", [
    (["http://127.0.0.1:1/v1"], "ends in /v1"),
    (["http://127.0.0.1:1"], "cannot connect to http://127.0.0.1:1"),
    (["ftp://x"], "not an http(s) URL"),
])
def test_bad_endpoints_get_one_line_and_nothing_runs(argv, error, tmp_path, capsys):
    assert main(["load", *argv, "--model", "m", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert error in err and err.count("\n") == 1
    assert not (tmp_path / "results").exists()


def test_rate_inf_is_the_closed_loop_and_a_rate_with_concurrency_is_refused(sim, tmp_path, capsys):
    assert main(["load", sim, "--model", "sim", "--num-prompts", "6", "--request-rate", "inf",
                 "--random-output-len", "4", "--out", str(tmp_path)]) == 0
    assert _result(tmp_path).workload.concurrency == 6  # vLLM: all at once
    assert main(["load", sim, "--model", "sim", "--request-rate", "5", "--concurrency", "2", "--out", str(tmp_path)]) == 2
    assert "--max-concurrency" in capsys.readouterr().err


def test_a_command_group_is_one_registration_and_refuses_through_main(monkeypatch, capsys):
    """A new group (here a stand-in `example`) is a module with register() plus its entry in COMMANDS; its
    CliError anywhere becomes `perfgate: MESSAGE` on stderr and exit 2 in main() alone."""
    import types

    import perfgate.cli as cli
    from perfgate.cli.errors import CliError

    def example(args):
        if args.case:
            raise CliError(f"no example for {args.case!r}")
        print("example: 0 runs")
        return 0

    def register(sub):
        p = sub.add_parser("example", help="a stand-in group")
        p.add_argument("--case", default=None)
        p.set_defaults(func=example)

    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, types.SimpleNamespace(register=register)))
    assert main(["example"]) == 0 and capsys.readouterr().out == "example: 0 runs\n"
    assert main(["example", "--case", "x"]) == 2
    out = capsys.readouterr()
    assert out.err == "perfgate: no example for 'x'\n" and out.out == ""


def test_split_and_deal():
    assert split_evenly(64, 3) == [22, 21, 21] and sum(split_evenly(7, 7)) == 7
    dealt = deal(10, [3, 2])
    assert sorted(i for d in dealt for i in d) == list(range(10)) and [len(d) for d in dealt] == [6, 4]
    assert dealt[0][:3] == [0, 2, 3] or dealt[0][0] == 0  # interleaved, not blocks


def test_perf_counter_is_one_clock_across_processes():
    assert clock_is_shared()


def _specs(n, max_tokens=8, first=0):
    return [RequestSpec.build(i, "/v1/completions", {"model": "sim", "prompt": "a b c", "max_tokens": max_tokens,
                                                     "stream": True}) for i in range(first, first + n)]


def test_workers_closed_loop_merge_on_the_shared_clock(sim):
    _reset(sim)
    run = run_load(sim, _specs(16), workers=2, concurrency=4, warmup_specs=_specs(2, 2, first=100))
    truth = _truth(sim)
    assert run.client["workers"] == 2 and [w["requests"] for w in run.client["per_worker"]] == [8, 8]
    assert [r.index for r in run.requests] == list(range(16)) and all(r.error is None for r in run.requests)
    assert run.cpu_s == pytest.approx(sum(w["cpu_s"] for w in run.client["per_worker"]))
    for r in run.requests:  # sent in another process, arrived at the server after, on the same clock
        t = truth[f"perfgate-{r.index}"]
        assert run.start <= r.sent_at
        assert r.sent_at <= t["arrival"] < r.sent_at + 0.5
        # `written` is stamped after the server's write returned, which a prompt reader can beat by µs:
        # the deadline (`intended`) is the exact lower bound.
        assert t["chunks"][0]["intended"] <= r.chunks[0][0] < t["chunks"][0]["written"] + 0.05
    assert max(r.done_at for r in run.requests) == run.end


def test_workers_open_loop_follow_the_one_drawn_schedule(sim):
    _reset(sim)
    run = run_load(sim, _specs(12, 4), workers=3, request_rate=40.0, seed=5)
    offsets = arrival_offsets(12, 40.0, 1.0, 5)
    got = np.array([r.scheduled_at - run.start for r in run.requests])
    assert np.allclose(got, offsets, atol=1e-9)
    assert all(r.error is None and r.sent_at >= r.scheduled_at for r in run.requests)
    assert len(run.client["per_worker"]) == 3


def test_merge_judges_the_worst_worker_and_sums_cpu():
    from perfgate.measure.loadgen import LoadRun
    from perfgate.measure.records import RawRequest
    from perfgate.measure.workers import merge_runs

    def run(indices, lag, cpu, end):
        reqs = [RawRequest(index=i, scheduled_at=None, sent_at=1.0 + i, done_at=end) for i in indices]
        return LoadRun(requests=reqs, warmup=[], start=1.0, end=end, loop_lag_ms=lag, cpu_s=cpu, requested_rate=None,
                       client={"event_loop": "asyncio", "http_client": "raw", "workers": 1, "prewarmed_connections": 2})

    merged = merge_runs([run([0, 2], [0.1] * 100, 0.5, 9.0), run([1, 3], [0.1] * 90 + [40.0] * 10, 0.25, 12.0)], 1.0, None)
    assert [r.index for r in merged.requests] == [0, 1, 2, 3]
    assert merged.cpu_s == 0.75 and merged.end == 12.0 and merged.start == 1.0
    assert max(merged.loop_lag_ms) == 40.0  # the stalled worker's samples, not diluted by the other's
    assert merged.client["workers"] == 2 and "prewarmed_connections" not in merged.client
    assert [w["prewarmed_connections"] for w in merged.client["per_worker"]] == [2, 2]


def test_a_sweep_runs_every_point_and_result_filename_never_overwrites(sim, tmp_path, capsys):
    """`perfgate load --scenario` with a sweep runs every point × its trials; --result-filename gets one file each."""
    sc = tmp_path / "sw.yaml"
    sc.write_text("name: sw\nnum_requests: 4\nprompt_tokens: 8\nmax_tokens: 4\nconcurrency: 1\nwarmup_requests: 0\n"
                  "trials: 2\nsweep: {concurrency: [1, 2]}\n")
    target = tmp_path / "vllm" / "bench.json"
    rc = main(["load", sim, "--scenario", str(sc), "--format", "vllm", "--result-filename", str(target),
               "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr()
    assert len(list((tmp_path / "out" / "results").glob("*.result.json"))) == 4  # 2 points x 2 trials
    written = sorted(p.name for p in (tmp_path / "vllm").iterdir())
    assert len(written) == 4 and all(n.startswith("bench.") and n.endswith(".json") for n in written), written


def test_a_load_run_is_recorded_in_the_history_store(sim, tmp_path, capsys):
    """`perfgate load --history FILE`: each run is a run of its series (recorded, nothing judged); twice is two runs."""
    from perfgate.history.store import HistoryStore

    store = tmp_path / "history.sqlite"
    for _ in range(2):
        assert main(["load", sim, "--model", "sim", "--num-prompts", "4", "--random-output-len", "4",
                     "--name", "nightly-load", "--history", str(store), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "history: recorded as run 1 of series #1" in out and "history: recorded as run 2 of series #1" in out
    with HistoryStore.open(str(store)) as h:
        series = h.series(h.list_series("nightly-load")[0].id)
    assert [r.status for r in series.runs] == ["not_judged", "not_judged"]
    assert "ttft_ms.p50" in series.runs[-1].values


def test_an_unusable_history_store_is_one_line_and_the_load_result_is_written(sim, tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    assert main(["load", sim, "--model", "sim", "--num-prompts", "4", "--random-output-len", "4",
                 "--history", str(tmp_path / "a-file" / "h.sqlite"), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("history: history store sqlite:///") and "a-file" in err
    assert list((tmp_path / "out" / "results").glob("*.result.json"))
