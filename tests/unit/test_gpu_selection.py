"""GPU selection: CUDA_VISIBLE_DEVICES mapped to NVML devices by UUID; telemetry and the hardware
record follow the engine's GPUs. NVML is the documented test double in fake_nvml.py (no GPU here)."""

from __future__ import annotations

import time

import pytest
from fake_nvml import FakeGpu, FakeNvml

from perfgate.engines.gpus import (
    GpuSelectionError,
    NvmlUnavailable,
    engine_devices,
    load_nvml,
    map_visible_devices,
)
from perfgate.measure.environment import detect_hardware, endpoint_hardware
from perfgate.measure.gpu_telemetry import engine_gpu_sampler
from perfgate.measure.telemetry import TelemetryRecorder

G0, G1, G2 = "GPU-0a1b2c3d-0000", "GPU-7e8f9a0b-1111", "GPU-7e8f9a0b-2222"
M0, M1 = "MIG-11aa22bb-0000", "MIG-33cc44dd-1111"
TABLE = [(G0, []), (G1, [M0, M1]), (G2, [])]


@pytest.mark.parametrize("visible,expected", [
    (None, [G0, G1, G2]),  # unset: every GPU
    ("", []),  # empty: none
    ("0", [G0]),
    ("2,0", [G2, G0]),  # the engine's order: its cuda:0 is NVML's GPU 2
    (" 1 , 2 ", [G1, G2]),
    (G2, [G2]),
    ("GPU-0a1b", [G0]),  # a unique prefix
    (f"{G2},0", [G2, G0]),
    ("MIG-33cc", [M1]),
    (M0, [M0]),
])
def test_cuda_visible_devices_to_uuids(visible, expected):
    assert map_visible_devices(visible, TABLE) == expected


@pytest.mark.parametrize("visible,error", [
    ("3", "no GPU with index 3"),
    ("-1", "no GPU with index -1"),
    ("GPU-7e8f", "matches 2 devices"),  # ambiguous prefix
    ("GPU-ffff", "matches no device"),
    ("MIG-GPU-0a1b2c3d-0000/1/0", "matches no device"),  # legacy MIG syntax: not guessed
    ("gpu0", "neither an index nor a GPU-/MIG- UUID"),
    ("0,0", "names a device twice"),
    ("0,,1", "empty entry"),
])
def test_cuda_visible_devices_errors_name_the_entry(visible, error):
    with pytest.raises(GpuSelectionError, match=error):
        map_visible_devices(visible, TABLE)


def _box() -> FakeNvml:
    return FakeNvml([
        FakeGpu(G0, name="NVIDIA L4", memory_total_mib=23034, used_mib=100, power_mw=30_000, util=0,
                max_sm_mhz=2040, max_mem_mhz=6251, power_limit_mw=72_000),
        FakeGpu(G1, name="NVIDIA A10G", used_mib=20_000, power_mw=250_000, util=97, power_limit_mw=300_000,
                migs=[FakeGpu(M0, used_mib=5000), FakeGpu(M1, used_mib=7000)]),
        FakeGpu(G2, name="NVIDIA A10G", used_mib=300, power_mw=60_000, util=5, power_limit_mw=250_000),
    ])


def _figures(nv, visible=None):
    """Each engine GPU's (device memory, power, utilization) over a short window, by the engine's cuda:<i>."""
    gpu = engine_gpu_sampler(visible, None, nvml=nv)
    rec = TelemetryRecorder([gpu], interval_s=0.01)
    rec.start()
    time.sleep(0.4)  # > 2 of NVML's default 1/6 s utilization samples
    rec.stop()
    return [d.uuid for d in gpu.devices], [(d.device_memory_mib_max, d.power_w_mean, d.utilization_pct_mean)
                                           for d in gpu.record.devices]


def test_sampler_follows_the_engines_gpus():
    uuids, figures = _figures(_box(), visible=f"{G2},1")
    assert uuids == [G2, G1]
    assert figures == [(300.0, 60.0, 5.0), (20_000.0, 250.0, 97.0)]


def test_sampler_on_a_mig_instance_reads_its_memory_and_the_parents_power():
    uuids, figures = _figures(_box(), visible="MIG-33cc")
    assert uuids == [M1] and figures == [(7000.0, 250.0, 97.0)]


def test_mig_energy_is_the_parent_gpus():
    nv = _box()
    gpu = engine_gpu_sampler("MIG-11aa", None, nvml=nv)
    rec = TelemetryRecorder([gpu], interval_s=0.01)
    rec.start()
    time.sleep(0.2)
    rec.stop()
    assert 250 * 0.2 * 0.9 <= gpu.record.energy_j <= 250 * 0.2 * 2  # the parent A10G draws 250 W


def test_sampler_reads_cuda_visible_devices_from_the_environment(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    assert _figures(_box())[0] == [G2]


def test_no_gpu_no_sampler_and_a_cpu_hardware_record():
    nv = FakeNvml(fail="NVML Shared Library Not Found")
    with pytest.raises(NvmlUnavailable, match="NVML: NVMLError: NVML Shared Library Not Found"):
        load_nvml(nv)
    assert engine_gpu_sampler(None, None, nvml=nv) is None
    hw = detect_hardware(nvml=nv)
    assert hw.accelerator == "cpu" and hw.gpu_count == 0 and hw.gpu_uuids == [] and hw.gpu_power_limit_w is None


def test_a_bad_selection_gives_no_sampler_rather_than_the_wrong_gpu():
    nv = _box()
    assert engine_gpu_sampler("7", None, nvml=nv) is None and nv.shutdown


def test_hardware_record_of_the_engines_gpus():
    hw = detect_hardware("2,1", nvml=_box())
    assert hw.accelerator == "NVIDIA A10G" and hw.gpu_count == 2 and hw.gpu_uuids == [G2, G1]
    assert hw.gpu_power_limit_w == 250.0 and hw.gpu_max_sm_clock_mhz == 1710 and hw.gpu_max_mem_clock_mhz == 6251
    assert hw.gpu_driver == "580.65.06" and hw.gpu_memory_mib == 23028
    one = detect_hardware("0", nvml=_box())
    assert (one.accelerator, one.gpu_count, one.gpu_max_sm_clock_mhz, one.gpu_power_limit_w) == ("NVIDIA L4", 1, 2040, 72.0)
    mixed = detect_hardware(None, nvml=_box())
    assert mixed.accelerator == "NVIDIA L4 + NVIDIA A10G" and mixed.gpu_count == 3


def test_engine_devices_uses_the_environment_unless_told(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    nv = _box()
    assert [d.uuid for d in engine_devices(nv)] == [G1]
    assert [d.uuid for d in engine_devices(nv, None, use_env=False)] == [G0, G1, G2]


def test_an_endpoints_hardware_is_unknown_or_as_stated_never_this_runners(monkeypatch):
    monkeypatch.delenv("PERFGATE_ENDPOINT_HARDWARE", raising=False)
    hw = endpoint_hardware()
    assert (hw.accelerator, hw.gpu_count, hw.cpu_model, hw.gpu_uuids) == ("unknown", 0, None, [])
    monkeypatch.setenv("PERFGATE_ENDPOINT_HARDWARE", "8x NVIDIA H100 80GB HBM3")
    assert (endpoint_hardware().accelerator, endpoint_hardware().gpu_count) == ("NVIDIA H100 80GB HBM3", 8)
    assert (endpoint_hardware("NVIDIA L4").accelerator, endpoint_hardware("NVIDIA L4").gpu_count) == ("NVIDIA L4", 1)
