"""perfgate.measure.contention: CPU other processes took from a window's engine and client cores."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from perfgate.measure import contention
from perfgate.measure.contention import ContentionMeter, disturbance_line
from perfgate.schema.result import Contention


def _stat(cpu0: tuple[int, ...], cpu1: tuple[int, ...]) -> str:
    line = lambda name, f: f"{name} " + " ".join(str(x) for x in f)  # noqa: E731
    total = tuple(a + b for a, b in zip(cpu0, cpu1))
    return "\n".join([line("cpu", total), line("cpu0", cpu0), line("cpu1", cpu1), "intr 1 2 3", ""])


def test_the_shares_are_busy_minus_our_own_cpu_time_over_the_window(tmp_path, monkeypatch):
    """Known truth: over a 5 s window core 0 (the engine's) was busy 3.0 s of which the engine used 2.5 s, and
    the hypervisor stole 0.1 s; core 1 (the client's) was busy 1.0 s of which perfgate's others used 0.8 s."""
    (tmp_path / "pressure").mkdir()
    clock = iter([100.0, 105.0])
    cpu = iter([(10.0, 20.0), (12.5, 23.3)])  # (engine tree, all of perfgate) CPU seconds at start, at end
    monkeypatch.setattr(contention.time, "perf_counter", lambda: next(clock))
    state = {}

    def tree(pid):
        if pid == 4242:
            state["now"] = next(cpu)
            return state["now"][0]
        return state["now"][1]

    monkeypatch.setattr(contention, "_tree_cpu_s", tree)
    meter = ContentionMeter(4242, (0,), proc=tmp_path)
    #                  user nice system idle iowait irq softirq steal
    (tmp_path / "stat").write_text(_stat((1000, 0, 0, 5000, 0, 0, 0, 0), (500, 0, 0, 5000, 0, 0, 0, 0)))
    (tmp_path / "pressure" / "cpu").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n")
    meter.start()
    # irq and softirq ticks (fields 6, 7: our own loopback traffic's kernel work) are not counted as busy
    (tmp_path / "stat").write_text(_stat((1200, 0, 100, 5100, 0, 40, 60, 10), (560, 0, 40, 5300, 0, 0, 30, 0)))
    (tmp_path / "pressure" / "cpu").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=1500000\n")
    c = meter.stop()
    assert c is not None and c.window_s == 5.0 and c.engine_cores == [0] and c.client_cores == [1]
    assert c.foreign_engine_cores == pytest.approx(0.1) and c.steal_engine_cores == pytest.approx(0.02)
    assert c.foreign_client_cores == pytest.approx(0.04) and c.steal_client_cores == 0.0
    assert c.pressure_cpu_some == pytest.approx(0.1)
    assert c.engine_cpu == pytest.approx(0.5) and c.client_cpu == pytest.approx(0.16)
    assert c.taken() == pytest.approx(0.12)  # the engine's share; the client's 4% is recorded, not judged
    assert disturbance_line(c) == "other processes took 12% of the engine's cores (steal 2%)"


def test_no_proc_means_not_measured(tmp_path):
    meter = ContentionMeter(1, (0,), proc=tmp_path / "absent")
    meter.start()
    assert meter.stop() is None


def test_unpinned_the_whole_box_is_told_not_judged_and_pinned_the_clients_share_is_not_judged():
    c = Contention(window_s=4.0, foreign_client_cores=0.3, steal_client_cores=0.0)
    assert c.taken() == 0.0  # unpinned: recorded, not judged (whose time was it?)
    assert disturbance_line(c) == "other processes took 30% of the box (steal 0%; engine not pinned)"
    pinned = Contention(window_s=4.0, engine_cores=[0], client_cores=[1], foreign_engine_cores=0.01,
                        foreign_client_cores=0.4, steal_engine_cores=0.0)
    assert pinned.taken() == pytest.approx(0.01)


@pytest.mark.skipif(not sys.platform.startswith("linux") or (os.cpu_count() or 1) < 2,
                    reason="needs Linux /proc and two cores")
def test_a_real_neighbour_spinning_on_the_engines_core_is_seen(tmp_path):
    """A process outside perfgate's tree (re-parented away from it) spins on core 0 while a sleeping stand-in
    engine is pinned there: most of core 0's time in the window is foreign."""
    engine = subprocess.Popen([sys.executable, "-c", "import os, time; os.sched_setaffinity(0, {0}); time.sleep(30)"])
    spin = ("import os, time; os.sched_setaffinity(0, {0}); t = time.time()\n"
            "while time.time() - t < 3: pass")
    try:
        time.sleep(0.3)
        # sh starts the spinner in the background and exits: the spinner is not our descendant
        subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{spin}" >/dev/null 2>&1 &'], check=True)
        time.sleep(0.5)
        meter = ContentionMeter(engine.pid, (0,))
        meter.start()
        time.sleep(1.5)
        c = meter.stop()
    finally:
        engine.kill()
        engine.wait()
    assert c is not None and c.foreign_engine_cores is not None
    assert c.foreign_engine_cores > 0.5, c
    assert c.engine_cpu is not None and c.engine_cpu < 0.1  # the stand-in engine slept
