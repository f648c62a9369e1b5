"""Telemetry: a real process tree here; NVML through the named test double in fake_nvml.py (no GPU here).

The GPU tests drive the same TelemetryRecorder + EngineGpuSampler a trial uses, over a real window
of real time, against the double's sample buffer, energy counter, process list and hanging calls.
"""

import subprocess
import sys
import time

import psutil
import pytest
from fake_nvml import NVMLError, FakeGpu, FakeNvml

from perfgate.engines import gpus
from perfgate.measure.gpu_telemetry import (
    ENDPOINT_TELEMETRY,
    endpoint_telemetry,
    energy_metrics,
    engine_gpu_sampler,
    reason_names,
)
from perfgate.measure.telemetry import HostSampler, TelemetryRecorder, telemetry_summary
from perfgate.schema.result import GpuTelemetry


def window(nv, seconds=0.2, visible="0", root_pid=None, interval_s=0.02, timeout_s=None):
    """One window as a trial runs it: (series, record, recorder)."""
    gpu = engine_gpu_sampler(visible, root_pid, nvml=nv, timeout_s=timeout_s)
    assert gpu is not None
    rec = TelemetryRecorder([gpu], interval_s=interval_s)
    rec.start()
    time.sleep(seconds)
    series = rec.stop()
    return series, gpu.record, rec


@pytest.fixture
def engine_tree():
    """A real engine-like tree: a server process and its worker child (which holds "GPU memory")."""
    code = "import subprocess,sys,time; c=subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)"
    root = subprocess.Popen([sys.executable, "-c", code])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # e.g. a paused A/B side
    try:
        deadline = time.time() + 10
        while not psutil.Process(root.pid).children() and time.time() < deadline:
            time.sleep(0.05)
        worker = psutil.Process(root.pid).children()[0].pid
        yield root.pid, worker, other.pid
    finally:
        for p in psutil.Process(root.pid).children(recursive=True):
            p.kill()
        for p in (root, other):
            p.kill()
            p.wait()


def test_engine_memory_is_its_processes_not_the_device(engine_tree):
    root, worker, other = engine_tree
    gpu = FakeGpu("GPU-aaaa-0000", used_mib=20_000, processes=[(worker, 3 * 2**30), (other, 5 * 2**30)])
    series, record, _ = window(FakeNvml([gpu]), root_pid=root)
    assert record.status == "ok" and record.engine_pids == [worker]
    d = record.devices[0]
    assert d.engine_memory_mib_max == 3072.0  # the worker's 3 GiB; the other process's 5 GiB is not the engine's
    assert d.device_memory_mib_max == 20_000.0
    assert {v for _, v in series["gpu0.engine_memory_mib"]} == {3072.0}


def test_no_engine_process_on_the_gpu_is_said_not_recorded_as_zero(engine_tree):
    root, _, other = engine_tree
    series, record, _ = window(FakeNvml([FakeGpu("GPU-aaaa-0000", processes=[(other, 2**30)])]), root_pid=root)
    assert record.devices[0].engine_memory_mib_max is None and "gpu0.engine_memory_mib" not in series
    assert any(f"NVML lists other processes ({other})" in n for n in record.notes)


def test_utilization_is_the_sample_buffer_cut_to_the_window():
    # Busy (100 %) until just before the window, idle in it: polling once at each edge or reading the
    # buffer from 0 would average busy samples in; the window's own samples are all 0.
    switch = time.time() + 0.3
    gpu = FakeGpu("GPU-aaaa-0000", sample_period_s=0.02, util_at=lambda t: 100 if t < switch else 0)
    time.sleep(max(0.0, switch - time.time()) + 0.01)
    series, record, _ = window(FakeNvml([gpu]), seconds=0.3)
    d = record.devices[0]
    assert d.utilization_source == "sample buffer" and d.utilization_samples >= 10
    assert d.utilization_pct_mean == 0.0
    ts = [t for t, _ in series["gpu0.utilization_pct"]]
    assert ts == sorted(ts) and ts[0] > 0 and ts[-1] <= 0.3 + 0.2


def test_utilization_drained_every_poll_outlives_a_short_buffer():
    # The buffer holds 4 samples (80 ms); a 0.5 s window must still see ~25 of them, each once.
    gpu = FakeGpu("GPU-aaaa-0000", sample_period_s=0.02, buffer_len=4, util_at=lambda t: int(t * 50) % 2 * 100)
    series, record, _ = window(FakeNvml([gpu]), seconds=0.5, interval_s=0.03)
    ts = [t for t, _ in series["gpu0.utilization_pct"]]
    assert record.devices[0].utilization_samples >= 18 and len(ts) == len(set(ts))
    assert 20 < record.devices[0].utilization_pct_mean < 80


def test_utilization_keeps_every_sample_of_a_drain_whatever_the_buffers_order():
    # At the trial's 0.25 s poll a drain returns ~12 samples of 20 ms; NVML does not promise time order.
    class NewestFirst(FakeNvml):
        def nvmlDeviceGetSamples(self, h, sampling_type, last_seen_us):
            vtype, samples = super().nvmlDeviceGetSamples(h, sampling_type, last_seen_us)
            return vtype, sorted(samples, key=lambda s: -s.timeStamp)

    gpu = FakeGpu("GPU-aaaa-0000", sample_period_s=0.02, util=50)
    t0 = time.perf_counter()
    series, record, _ = window(NewestFirst([gpu]), seconds=0.8, interval_s=0.25)
    expected = (time.perf_counter() - t0) / 0.02
    ts = [t for t, _ in series["gpu0.utilization_pct"]]
    assert ts == sorted(set(ts)) and record.devices[0].utilization_samples >= 0.8 * expected - 2


def test_utilization_polled_where_the_buffer_is_not_supported():
    _, record, _ = window(FakeNvml([FakeGpu("GPU-aaaa-0000", util=87, samples_supported=False)]))
    d = record.devices[0]
    assert d.utilization_source == "polled" and d.utilization_pct_mean == 87.0
    assert any("nvmlDeviceGetSamples: NVMLError: Not Supported" in n for n in record.notes)


def test_energy_from_the_counter_and_joules_per_output_token():
    t0 = time.perf_counter()
    _, record, _ = window(FakeNvml([FakeGpu("GPU-aaaa-0000", power_mw=200_000)]), seconds=0.5)
    elapsed = time.perf_counter() - t0
    assert 200 * 0.5 * 0.95 <= record.energy_j <= 200 * elapsed * 1.05  # 200 W over the window
    assert record.devices[0].energy_j == record.energy_j and record.devices[0].power_w_mean == 200.0
    metrics = energy_metrics(record, output_tokens=1000)
    assert metrics == {"gpu_energy_j": record.energy_j, "gpu_energy_j_per_output_token": round(record.energy_j / 1000, 6)}
    assert record.energy_j_per_output_token == metrics["gpu_energy_j_per_output_token"]
    assert energy_metrics(record, 0) == {"gpu_energy_j": record.energy_j}
    assert energy_metrics(GpuTelemetry(status="unavailable: x", energy_j=5.0), 10) == {}


def test_clocks_temperature_and_clock_event_reasons():
    gpu = FakeGpu("GPU-aaaa-0000", sm_mhz=1410, mem_mhz=1593, temperature_c=71, clock_event_reasons=0x4 | 0x20)
    series, record, _ = window(FakeNvml([gpu]))
    d = record.devices[0]
    assert (d.sm_clock_mhz_min, d.sm_clock_mhz_mean, d.mem_clock_mhz_mean, d.temperature_c_max) == (1410, 1410, 1593, 71)
    assert d.clock_event_reasons == {"SwPowerCap": 1.0, "SwThermalSlowdown": 1.0}
    summary = telemetry_summary(series)
    assert summary["gpu0.temperature_c.max"] == 71 and "gpu0.sm_clock_mhz.mean" not in summary  # not a verdict metric
    assert reason_names(0x1 | 0x800) == ["GpuIdle", "0x800"]


def test_clock_event_reasons_by_their_older_name_on_an_older_driver():
    class OldDriver(FakeNvml):  # the binding has the new name; the driver lacks the symbol (before 535)
        def nvmlDeviceGetCurrentClocksEventReasons(self, h):
            raise NVMLError(13)  # NVML_ERROR_FUNCTION_NOT_FOUND

        def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
            return h.clock_event_reasons

    _, record, _ = window(OldDriver([FakeGpu("GPU-aaaa-0000", clock_event_reasons=0x8)]))
    assert record.devices[0].clock_event_reasons == {"HwSlowdown": 1.0}
    assert not [n for n in record.notes if "clock event" in n]
    _, record, _ = window(FakeNvml([FakeGpu("GPU-aaaa-0000", clock_event_reasons=0)]))
    assert record.devices[0].clock_event_reasons == {}


def test_a_hanging_nvml_call_marks_telemetry_unavailable_and_the_trial_goes_on():
    nv = FakeNvml(hang={"nvmlDeviceGetPowerUsage"})
    try:
        t0 = time.perf_counter()
        series, record, _ = window(nv, seconds=0.1, timeout_s=0.2)
        assert time.perf_counter() - t0 < 3  # bounded: one deadline, then every call fails at once
        assert record.status == "unavailable: NVML call timed out: nvmlDeviceGetPowerUsage after 0.2 s"
        assert series == {} and record.energy_j is None and energy_metrics(record, 100) == {}
        assert [d.uuid for d in record.devices] == ["GPU-aaaa-0000"]
    finally:
        nv.release()


def test_a_hanging_nvml_init_means_no_gpu_sampler(monkeypatch):
    monkeypatch.setattr(gpus, "NVML_INIT_TIMEOUT_S", 0.2)
    nv = FakeNvml(hang={"nvmlInit"})
    try:
        t0 = time.perf_counter()
        assert engine_gpu_sampler("0", None, nvml=nv, timeout_s=0.1) is None
        with pytest.raises(gpus.NvmlUnavailable, match="NvmlTimeout: NVML call timed out: nvmlInit after 0.2 s"):
            gpus.load_nvml(nv, timeout_s=0.1)
        assert time.perf_counter() - t0 < 3
    finally:
        nv.release()


def test_no_worker_thread_outlives_a_machine_without_nvml():
    import threading

    before = {t.ident for t in threading.enumerate()}
    for _ in range(5):
        assert engine_gpu_sampler("0", None, nvml=FakeNvml(fail="NVML Shared Library Not Found")) is None
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.ident not in before and t.name == "perfgate-nvml"]


def test_bounded_nvml_passes_answers_errors_and_constants_through():
    nv = gpus.load_nvml(FakeNvml(fail=None))
    assert nv.NVML_CLOCK_SM == 1 and nv.nvmlDeviceGetCount() == 1
    with pytest.raises(IndexError):
        nv.nvmlDeviceGetHandleByIndex(5)
    gpus.shutdown(nv)
    assert nv._nvml.shutdown


def test_endpoint_record_reads_nothing():
    assert endpoint_telemetry().status == ENDPOINT_TELEMETRY and endpoint_telemetry().devices == []


def test_host_sampler_sees_child_memory():
    # A child that holds ~200 MiB: the tree's RSS must include it.
    code = "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(30)"
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess,sys; subprocess.run([sys.executable, '-c', {code!r}])"])
    try:
        sampler = HostSampler(parent.pid)
        deadline = time.time() + 10
        rss = 0.0
        while time.time() < deadline and rss < 200:
            rss = sampler.sample().get("engine.rss_mib", 0.0)
            time.sleep(0.1)
        assert rss >= 200
    finally:
        for p in psutil.Process(parent.pid).children(recursive=True):
            p.kill()
        parent.kill()
        parent.wait()


def test_recorder_series_and_summary():
    series, record, _ = window(FakeNvml(), seconds=0.1, interval_s=0.01)
    points = series["gpu0.power_w"]
    assert len(points) >= 3
    assert [t for t, _ in points] == sorted(t for t, _ in points)
    summary = telemetry_summary(series)
    assert summary["gpu0.memory_used_mib.max"] == 1536.0 and summary["gpu0.power_w.mean"] == 142.5


def test_recorder_does_not_wait_forever_for_a_stuck_sampler():
    class Stuck:
        def __init__(self):
            self.calls = 0

        def sample(self):
            self.calls += 1
            if self.calls > 1:
                time.sleep(2)  # stands for a call that never returns
            return {"x": 1.0}

        def close(self):
            pass

    rec = TelemetryRecorder([Stuck()], interval_s=0.01, join_timeout_s=0.2)
    rec.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    rec.stop()
    assert time.perf_counter() - t0 < 1.5 and rec.notes and "left behind" in rec.notes[0]


def test_a_trial_records_the_engines_gpu_and_an_endpoint_trial_nothing_of_this_runner(tmp_path, monkeypatch):
    """run_trial end to end on the reference engine, on a runner whose (test-double) GPU holds the engine."""
    from pathlib import Path

    from perfgate.config.matrix import EngineConfig, ScenarioFile, expand_sweep
    from perfgate.engines import get_adapter
    from perfgate.engines.pool import ModelRef, Target
    from perfgate.engines.server import EngineServer
    from perfgate.measure.trial import run_trial
    from perfgate.schema.result import EngineInfo, read_result

    nv = FakeNvml([FakeGpu("GPU-aaaa-0000", power_mw=180_000)])
    real = gpus.load_nvml
    monkeypatch.setattr(gpus, "load_nvml", lambda nvml=None, timeout_s=None: real(nv, timeout_s))
    monkeypatch.delenv("PERFGATE_ENDPOINT_HARDWARE", raising=False)
    cfg = EngineConfig(id="sim", kind="sim", boot_timeout_s=30, flags=("--ttft-base-ms", "20", "--itl-ms", "10"))
    server = EngineServer(get_adapter("sim"), cfg, ModelRef("sim", "sim"), Path(sys.executable), tmp_path / "sim.log").start()
    try:
        pid = server.proc.pid
        nv.gpus[0].processes = [(pid, 2 * 2**30)]
        scenario = expand_sweep(ScenarioFile(name="gpu-tel", num_requests=8, prompt_tokens=20, max_tokens=16,
                                             concurrency=2, warmup_requests=0, seed=1, max_coalesced_fraction=1.0),
                                tmp_path)[0]
        info = EngineInfo(name="sim", version=server.version)
        engine = run_trial(Target(server.base_url, ModelRef("sim", "sim"), info, server), scenario, trial=0,
                           test_id="engine", results_dir=tmp_path)
        endpoint = run_trial(Target(server.base_url, ModelRef("sim", "sim"), info), scenario, trial=0,
                             test_id="endpoint", results_dir=tmp_path)
    finally:
        server.stop()
    tel = engine.gpu_telemetry
    assert engine.environment.hardware.accelerator == "NVIDIA A10G"
    assert tel.status == "ok" and tel.engine_pids == [pid]
    assert tel.devices[0].engine_memory_mib_max == 2048.0 and tel.energy_j > 0
    tokens = sum(r.output_tokens for r in engine.requests)
    assert engine.summary.metrics["gpu_energy_j_per_output_token"] == pytest.approx(tel.energy_j / tokens, rel=1e-3)
    assert engine.summary.metrics["gpu0.engine_memory_mib.max"] == 2048.0
    # An endpoint's GPUs are not this runner's: nothing read, hardware unknown, no GPU metric.
    assert endpoint.environment.hardware.accelerator == "unknown" and endpoint.environment.hardware.gpu_count == 0
    assert endpoint.gpu_telemetry.status == ENDPOINT_TELEMETRY
    assert not [k for k in endpoint.summary.metrics if k.startswith("gpu")] and not endpoint.telemetry
    # Written and read back through the schema (old files without gpu_telemetry stay valid: it is optional).
    again = read_result(tmp_path / "results" / "engine.trial0.result.json")
    assert again.gpu_telemetry == tel
