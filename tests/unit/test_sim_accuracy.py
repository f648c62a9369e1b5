"""perfgate's client against the reference engine's server-side truth.

The simulator starts through the same lifecycle as real engines
(EngineServer + SimAdapter). perf_counter is CLOCK_MONOTONIC on Linux, so the
client's read timestamps and the simulator's write timestamps share a clock:
every client timestamp must come after the matching server write (causality)
and not long after it (accuracy). Bounds are set for loads where this 2-core
machine is not saturated.
"""

from __future__ import annotations

import json
import statistics
import sys
import urllib.request
from pathlib import Path

import pytest

from perfgate.config.matrix import EngineConfig, ScenarioFile, expand_sweep
from perfgate.engines import ModelRef, get_adapter
from perfgate.engines.pool import Target
from perfgate.engines.server import EngineServer
from perfgate.measure.loadgen import arrival_offsets
from perfgate.measure.trial import CLIENT_BOUND_RERUNS, run_trial
from perfgate.schema.result import EngineInfo

TTFT_MS, PER_PROMPT_MS, ITL_MS = 50.0, 0.1, 5.0


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    cfg = EngineConfig(id="sim", kind="sim", boot_timeout_s=30, flags=(
        "--ttft-base-ms", str(TTFT_MS), "--ttft-per-prompt-token-ms", str(PER_PROMPT_MS), "--itl-ms", str(ITL_MS)))
    out = tmp_path_factory.mktemp("sim")
    server = EngineServer(get_adapter("sim"), cfg, ModelRef("sim", "sim"), Path(sys.executable), out / "sim.log").start()
    target = Target(server.base_url, ModelRef("sim", "sim"), EngineInfo(name="sim", version=server.version), server)
    yield target, out
    server.stop()


def _truth(target):
    with urllib.request.urlopen(target.base_url + "/sim/truth") as r:
        return json.loads(r.read())


def _reset(target):
    urllib.request.urlopen(urllib.request.Request(target.base_url + "/sim/reset", data=b"", method="POST")).read()


def _run(target, out, name, **kw):
    """One trial against a freshly reset truth; a client-bound one is run again once, as the suite does
    (CLIENT_BOUND_RERUNS), but here with the truth reset so it describes the attempt that stands."""
    spec = dict(name=name, num_requests=24, prompt_tokens=100, max_tokens=32, concurrency=4, warmup_requests=0, seed=1)
    spec.update(kw)
    for _ in range(1 + CLIENT_BOUND_RERUNS):
        _reset(target)
        result = run_trial(target, expand_sweep(ScenarioFile(**spec))[0], trial=0, test_id=name, results_dir=out)
        if result.status != "client_bound":
            break
    return result


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_ttft_itl_e2e_match_truth(sim, api):
    target, out = sim
    result = _run(target, out, f"acc-{api}", api=api)
    truth = _truth(target)
    assert result.status == "ok", result.failure_reason
    # The engine-side view (/metrics deltas over the window) saw exactly the measured requests.
    assert result.server_metrics["vllm:time_to_first_token_seconds_count"] == 24
    assert result.server_metrics["vllm:generation_tokens_total"] == 24 * 32
    ttft_err, e2e_err, read_err = [], [], []
    origin = result.clock_origin_s
    for r in result.requests:
        t = truth[f"perfgate-{r.index}"]
        assert r.prompt_tokens == 100 and r.output_tokens == 32 and r.chunks == 32
        true_ttft_ms = t["ttft_s"] * 1000
        # The instrument: intended times follow the model exactly; writes never come early.
        intended_ttft_ms = (t["chunks"][0]["intended"] - t["arrival"]) * 1000
        assert intended_ttft_ms == pytest.approx(TTFT_MS + PER_PROMPT_MS * 100, abs=1e-6)
        assert all(c["written"] >= c["intended"] for c in t["chunks"])
        # Causality, exact: nobody can see the first token before the server's deadline for it.
        assert r.ttft_ms >= intended_ttft_ms
        ttft_err.append(r.ttft_ms - true_ttft_ms)
        # Read path, on the shared clock: client's first-token read − server's write of it.
        first_read = origin + r.sent_at_s + r.ttft_ms / 1000
        read_err.append((first_read - t["chunks"][0]["written"]) * 1000)
        e2e_err.append(r.e2e_ms - (t["done"] - t["arrival"]) * 1000)
        true_gaps = [(b["written"] - a["written"]) * 1000 for a, b in zip(t["chunks"], t["chunks"][1:])]
        gap_err = [c - g for c, g in zip(r.itl_ms, true_gaps)]
        assert statistics.median(gap_err) == pytest.approx(0.0, abs=0.5)
    # The simulator stamps "written" after its write call returns (and its loop may run
    # other tasks first), so single reads can precede that stamp on a busy 2-core box;
    # exact causality is checked against the deadlines ("intended") instead.
    # What the client controls: it timestamps the server's write within ~0.3 ms (docs/accuracy.md);
    # bound at 2 ms for a busy 2-core CI box.
    assert statistics.median(read_err) < 2.0
    # End to end, including the simulator's own request intake on the shared cores.
    assert statistics.mean(ttft_err) < 10.0
    assert statistics.mean(e2e_err) < 10.0


def test_client_reads_never_precede_server_writes(sim):
    target, out = sim
    result = _run(target, out, "causality", num_requests=8)
    truth = _truth(target)
    origin = result.clock_origin_s  # the client's clock origin, on the machine-wide monotonic clock
    for r in result.requests:
        t = truth[f"perfgate-{r.index}"]
        first_read = origin + r.sent_at_s + r.ttft_ms / 1000
        last_read = origin + r.sent_at_s + r.e2e_ms / 1000
        # Exact: no chunk can be read before the server's deadline for it.
        assert first_read >= t["chunks"][0]["intended"]
        assert last_read >= t["chunks"][-1]["intended"]


def test_open_loop_schedule_is_kept(sim):
    target, out = sim
    result = _run(target, out, "open-loop", concurrency=None, request_rate=10.0, num_requests=20, max_tokens=16)
    h = result.client_health
    requests = sorted(result.requests, key=lambda r: r.index)
    # The schedule kept is the seeded draw, from the window's start.
    assert [r.scheduled_at_s for r in requests] == pytest.approx(
        list(arrival_offsets(21, 10.0, 1.0, seed=result.workload.seed)[:20]), abs=1e-6)
    lags = sorted(r.schedule_lag_ms for r in requests)
    assert lags[0] >= 0.0  # never early (the default uvloop's timers alone wake up to 1 ms early)
    assert statistics.median(lags) < 5.0  # typically ~1 ms; the p99 gate (10 ms) is the client-bound check
    # Late only by what the client's event loop was kept from running (its 5 ms probe under-reports a stall by at
    # most its interval), plus the send itself.
    assert lags[-1] <= (h.loop_lag_ms_max or 0.0) + 5.0 + 2.0, (lags, h.loop_lag_ms_max)
    assert h.achieved_rate is not None and all(r.error is None for r in result.requests)
