"""Telemetry samplers: a real process tree here; NVML through a named test double (no GPU here)."""

import subprocess
import sys
import time

from fake_nvml import FakeGpu, FakeNvml

from perfgate.measure.telemetry import (
    HostSampler,
    NvmlSampler,
    TelemetryRecorder,
    telemetry_summary,
)


def test_nvml_units():
    nv = FakeNvml([FakeGpu("GPU-aaaa-0000", used_mib=1536, power_mw=142_500, util=87)])
    s = NvmlSampler(nv, visible="0")
    assert s.sample() == {"gpu0.memory_used_mib": 1536.0, "gpu0.power_w": 142.5, "gpu0.utilization_pct": 87.0}
    s.close()
    assert nv.shutdown


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
        for p in __import__("psutil").Process(parent.pid).children(recursive=True):
            p.kill()
        parent.kill()
        parent.wait()


def test_recorder_series_and_summary():
    rec = TelemetryRecorder([NvmlSampler(FakeNvml())], interval_s=0.01)
    rec.start()
    time.sleep(0.1)
    series = rec.stop()
    points = series["gpu0.power_w"]
    assert len(points) >= 3
    assert [t for t, _ in points] == sorted(t for t, _ in points)
    summary = telemetry_summary(series)
    assert summary["gpu0.memory_used_mib.max"] == 1536.0 and summary["gpu0.power_w.mean"] == 142.5
