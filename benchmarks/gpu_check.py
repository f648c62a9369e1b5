"""One prepared check of perfgate's GPU telemetry and GPU selection on a real NVIDIA GPU (no vLLM needed).

It drives a known load with torch in a child process (a matmul loop: busy, then a 50 % duty
cycle, then idle, each of known length, holding a known allocation), runs perfgate's own
telemetry (the TelemetryRecorder + EngineGpuSampler a trial uses) and GPU selection against
it, and prints each figure next to what torch and NVML say directly (raw ``pynvml`` reads,
what nvidia-smi shows). A second pair of children checks selection by UUID and that a paused
second process (a live A/B's other side) is not counted as the engine's memory.

    PYTHONPATH=src python benchmarks/gpu_check.py [--device N] [--mem-gib 4] [--phase-s 10]

Needs: an NVIDIA GPU (whole, not MIG) that nothing else is using, torch with CUDA,
nvidia-ml-py, perfgate's own dependencies. About 1.5 minutes; a watchdog ends it at 280 s.
Exit 0: every figure agrees within its stated tolerance; 1: one does not (or the watchdog
fired); 2: it cannot run here ("no NVIDIA GPU: <NVML error>", no torch, a MIG GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

WATCHDOG_S = 280
CONTEXT_MIB = 1536  # per-process memory NVML counts beyond torch's reserved pool: CUDA context, cuBLAS, modules


# --------------------------------------------------------------------------- the load (child processes)


def child(args) -> None:
    """The known load on cuda:0 (whatever CUDA_VISIBLE_DEVICES names); JSON lines on stdout."""
    import torch

    def say(**kw):
        print(json.dumps(kw), flush=True)

    props = torch.cuda.get_device_properties(0)
    block = torch.empty(int(args.mem_gib * 2**30), dtype=torch.uint8, device="cuda:0")
    block.fill_(1)  # touched: resident, not just reserved
    n = 8192
    a = torch.randn(n, n, device="cuda:0", dtype=torch.float16)
    b = torch.randn(n, n, device="cuda:0", dtype=torch.float16)
    c = torch.mm(a, b)
    torch.cuda.synchronize()
    t0 = time.monotonic()
    say(event="ready", pid=os.getpid(), uuid=str(getattr(props, "uuid", "")).removeprefix("GPU-"), name=props.name, t0=t0,
        reserved=torch.cuda.memory_reserved(0), allocated=torch.cuda.memory_allocated(0), torch=torch.__version__)

    def busy(until: float) -> int:
        k = 0
        while time.monotonic() < until:
            for _ in range(8):
                torch.mm(a, b, out=c)
            torch.cuda.synchronize()
            k += 8
        return k

    end = t0
    for phase in args.schedule.split(","):
        kind, seconds = phase.split(":")
        end += float(seconds)
        if kind == "busy":
            k = busy(end)
        elif kind == "duty":  # 0.5 s of matmuls, 0.5 s of nothing: 50 % of the time a kernel runs
            k = 0
            while time.monotonic() < end:
                k += busy(min(end, time.monotonic() + 0.5))
                time.sleep(max(0.0, min(end, time.monotonic() + 0.5) - time.monotonic()))
        else:
            k = 0
            time.sleep(max(0.0, end - time.monotonic()))
        say(event="phase", kind=kind, matmuls=k, reserved=torch.cuda.memory_reserved(0))
    say(event="done", reserved=torch.cuda.memory_reserved(0))
    sys.stdin.read()  # hold the memory until the parent closes our stdin
    del block


def spawn(visible: str, mem_gib: float, schedule: str) -> subprocess.Popen:
    """A wrapper process whose child runs the load: the "engine" is a tree, like a server and its worker."""
    me = [sys.executable, __file__]
    load = me + ["--child", "--mem-gib", str(mem_gib), "--schedule", schedule]
    wrap = [sys.executable, "-c", "import subprocess,sys; sys.exit(subprocess.call(sys.argv[1:]))", *load]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": visible, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    return subprocess.Popen(wrap, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)


def expect(proc: subprocess.Popen, event: str, timeout_s: float = 150) -> dict:
    result: dict = {}

    def read():
        for line in proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("event") == event:
                result.update(msg)
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout_s)
    if not result:
        raise SystemExit(f"gpu_check: the torch child sent no {event!r} within {timeout_s:g} s (exit {proc.poll()})")
    return result


def end(*procs: subprocess.Popen) -> None:
    """Resume (a paused side), close stdin (the load lets go of its memory and exits), reap."""
    for p in procs:
        for pid in (p.pid, *_children(p.pid)):
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        try:
            p.stdin.close()
        except (OSError, ValueError):
            pass
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:  # the load first (it holds the GPU memory), then its wrapper
            for pid in (*_children(p.pid), p.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            p.wait()


# --------------------------------------------------------------------------- the comparisons


class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str, bool]] = []

    def add(self, name: str, ours, direct, tolerance: str, ok: bool) -> None:
        self.rows.append((name, _fmt(ours), _fmt(direct), tolerance, bool(ok)))
        print(f"{'ok  ' if ok else 'FAIL'} {name:<50} perfgate {_fmt(ours):>20}   direct {_fmt(direct):>28}   "
              f"[{tolerance}]", flush=True)

    def near(self, name: str, ours, direct, rel: float = 0.0, abs_: float = 0.0, tolerance: str = "") -> None:
        ok = ours is not None and direct is not None and abs(ours - direct) <= max(abs_, rel * abs(direct))
        allowed = " or ".join(x for x in (f"±{rel:.0%}" if rel else "", f"±{abs_:g}" if abs_ else "") if x)
        self.add(name, ours, direct, tolerance or allowed or "equal", ok)

    @property
    def failed(self) -> list[str]:
        return [r[0] for r in self.rows if not r[4]]


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


class Direct:
    """What NVML says directly (raw pynvml, as nvidia-smi reads it), polled beside perfgate's window."""

    def __init__(self, nvml, handle, pids: list[int]):
        self.nv, self.h, self.pids = nvml, handle, pids
        self.util, self.power, self.sm, self.mem_clock, self.temp, self.reasons = [], [], [], [], [], 0
        self.proc_mib: dict[int, float] = {}
        self.device_mib: list[float] = []

    def energy(self) -> int:
        return self.nv.nvmlDeviceGetTotalEnergyConsumption(self.h)

    def poll(self) -> None:
        nv, h = self.nv, self.h
        self.util.append(nv.nvmlDeviceGetUtilizationRates(h).gpu)
        self.power.append(nv.nvmlDeviceGetPowerUsage(h) / 1000)
        self.sm.append(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))
        self.mem_clock.append(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM))
        self.temp.append(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
        try:
            self.reasons |= nv.nvmlDeviceGetCurrentClocksEventReasons(h)
        except nv.NVMLError:  # a driver before 535 has only the older name
            self.reasons |= nv.nvmlDeviceGetCurrentClocksThrottleReasons(h)
        self.device_mib.append(nv.nvmlDeviceGetMemoryInfo(h).used / 2**20)
        for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
            if p.pid in self.pids and p.usedGpuMemory is not None:
                self.proc_mib[p.pid] = p.usedGpuMemory / 2**20


def measure(nvml, handle, visible: str, root_pid: int, direct_pids: list[int], start: float, stop: float):
    """perfgate's window [start, stop] (monotonic) on the engine tree at root_pid, and the direct reads beside it."""
    from perfgate.measure.gpu_telemetry import engine_gpu_sampler
    from perfgate.measure.telemetry import TelemetryRecorder

    time.sleep(max(0.0, start - time.monotonic()))
    gpu = engine_gpu_sampler(visible, root_pid)
    if gpu is None:
        raise SystemExit(f"gpu_check: perfgate found no GPU for CUDA_VISIBLE_DEVICES={visible}")
    rec = TelemetryRecorder([gpu])  # the trial's interval (0.25 s)
    direct = Direct(nvml, handle, direct_pids)
    e0 = direct.energy()  # read just before perfgate's (its start and end reads come first in start and stop)
    t0 = time.monotonic()
    rec.start()
    while time.monotonic() < stop:
        direct.poll()
        time.sleep(0.37)  # not a divisor of the duty cycle's 1 s: polls land on every part of it
    e1 = direct.energy()
    seconds = time.monotonic() - t0
    rec.stop()
    direct.energy_j = (e1 - e0) / 1000
    direct.seconds = seconds
    return gpu.record, direct


def mean(xs):
    return sum(xs) / len(xs) if xs else None


def compare_window(t: Table, label: str, record, direct: Direct, util_expect: tuple[float, float]) -> None:
    from perfgate.measure.gpu_telemetry import reason_names

    d = record.devices[0] if record.devices else None
    t.add(f"{label}: telemetry status", record.status, "ok", "equal", record.status == "ok")
    if d is None or record.status != "ok":
        return
    lo, hi = util_expect
    t.add(f"{label}: utilization % (sample buffer, window)", d.utilization_pct_mean,
          f"{mean(direct.util):.1f} polled", f"in [{lo:g}, {hi:g}], ±20 of polled",
          d.utilization_pct_mean is not None and lo <= d.utilization_pct_mean <= hi
          and abs(d.utilization_pct_mean - mean(direct.util)) <= 20)
    t.add(f"{label}: utilization samples / source", f"{d.utilization_samples} / {d.utilization_source}",
          f"{direct.seconds:.1f} s window", "≥ 1 per s, sample buffer",
          d.utilization_source == "sample buffer" and d.utilization_samples >= int(direct.seconds))
    t.near(f"{label}: energy J (counter delta)", d.energy_j, direct.energy_j, rel=0.03, abs_=2.0)
    t.near(f"{label}: energy J vs mean power × time", d.energy_j, mean(direct.power) * direct.seconds, rel=0.15)
    t.near(f"{label}: power W mean", d.power_w_mean, mean(direct.power), rel=0.15, abs_=10)
    t.near(f"{label}: SM clock MHz mean", d.sm_clock_mhz_mean, mean(direct.sm), rel=0.15, abs_=100)
    t.near(f"{label}: memory clock MHz mean", d.mem_clock_mhz_mean, mean(direct.mem_clock), rel=0.02)
    t.near(f"{label}: temperature °C max", d.temperature_c_max, max(direct.temp), abs_=3)
    t.near(f"{label}: device memory MiB max", d.device_memory_mib_max, max(direct.device_mib), abs_=64)
    t.add(f"{label}: clock event reasons", d.clock_event_reasons, sorted(reason_names(direct.reasons)),
          "GpuIdle < 20 % when busy" if lo >= 40 else "shown", lo < 40 or d.clock_event_reasons.get("GpuIdle", 0) < 0.2)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", type=int, default=None, help="NVML index of the GPU to use (default: the last)")
    p.add_argument("--mem-gib", type=float, default=4.0, help="the known allocation of the load (GiB)")
    p.add_argument("--phase-s", type=float, default=10.0, help="seconds of each phase: busy, 50 %% duty, idle")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--schedule", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0

    try:  # first and alone: on a machine without a GPU this is all that runs (well under a second)
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:
        print(f"no NVIDIA GPU: NVML: {type(exc).__name__}: {str(exc) or 'no detail'}".splitlines()[0])
        return 2
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        print("gpu_check: torch is not installed (a CUDA build of torch is the known load)")
        return 2
    try:
        import perfgate  # noqa: F401
    except ImportError:  # a plain checkout without `pip install -e .`
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from perfgate.engines import gpus
    from perfgate.measure.environment import detect_hardware

    procs: list[subprocess.Popen] = []

    def watchdog():
        print(f"FAIL gpu_check: still running after {WATCHDOG_S} s: giving up", flush=True)
        end(*procs)
        os._exit(1)

    timer = threading.Timer(WATCHDOG_S, watchdog)
    timer.daemon = True
    timer.start()
    try:
        return _run(args, pynvml, gpus, detect_hardware, procs)
    finally:
        timer.cancel()
        end(*procs)


def _run(args, nv, gpus, detect_hardware, procs: list) -> int:
    """The checks proper (main has found NVML, torch and perfgate)."""
    index = args.device if args.device is not None else nv.nvmlDeviceGetCount() - 1
    h = nv.nvmlDeviceGetHandleByIndex(index)
    uuid = nv.nvmlDeviceGetUUID(h)
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    name = nv.nvmlDeviceGetName(h)
    name = name.decode() if isinstance(name, bytes) else name
    try:
        if nv.nvmlDeviceGetMigMode(h)[0]:
            print(f"gpu_check: GPU {index} ({uuid}) is in MIG mode: this check needs a whole GPU")
            return 2
    except nv.NVMLError:
        pass
    others = [q.pid for q in nv.nvmlDeviceGetComputeRunningProcesses(h)]
    try:
        from importlib.metadata import version

        binding = version("nvidia-ml-py")
    except Exception:
        binding = "?"
    started = time.monotonic()
    print(f"gpu_check: GPU {index}: {name} {uuid}, driver {nv.nvmlSystemGetDriverVersion()}, "
          f"CUDA driver {nv.nvmlSystemGetCudaDriverVersion()}, nvidia-ml-py {binding}, "
          f"{nv.nvmlDeviceGetMemoryInfo(h).total / 2**20:.0f} MiB, enforced power limit "
          f"{nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000:g} W; other compute processes: {others or 'none'}", flush=True)
    t = Table()
    try:
        newest = max((int(s.timeStamp) for s in nv.nvmlDeviceGetSamples(h, nv.NVML_GPU_UTILIZATION_SAMPLES, 0)[1]),
                     default=None)
    except nv.NVMLError as exc:
        print(f"gpu_check: nvmlDeviceGetSamples: {exc}")
        newest = None
    t.near("NVML sample timestamps vs Unix time (s)", (newest or 0) / 1e6, time.time(), abs_=5.0,
           tolerance="±5 s: perfgate cuts the buffer by Unix-epoch µs")

    # -- A: selection by index, the three phases --------------------------------------------------------
    phase = args.phase_s
    a = spawn(str(index), args.mem_gib, f"busy:{phase},duty:{phase},idle:{phase}")
    procs.append(a)
    ready = expect(a, "ready")
    cpid = ready["pid"]
    print(f"gpu_check: load A: pid {cpid} (under wrapper {a.pid}), torch {ready['torch']}, "
          f"{args.mem_gib:g} GiB allocated, torch reserved {ready['reserved'] / 2**20:.0f} MiB", flush=True)
    mine = _selected(gpus, str(index))
    holder = [_text(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i))) for i in range(nv.nvmlDeviceGetCount())
              if cpid in [q.pid for q in nv.nvmlDeviceGetComputeRunningProcesses(nv.nvmlDeviceGetHandleByIndex(i))]]
    torch_uuid = f"GPU-{ready['uuid']}" if ready["uuid"] else "(torch gives no uuid)"
    t.add(f"selection CUDA_VISIBLE_DEVICES={index}", mine, f"torch {torch_uuid}; NVML pid on {holder}",
          "one device, equal", mine == holder == [uuid] and (not ready["uuid"] or mine == [torch_uuid]))
    hw = detect_hardware(str(index))
    t.add("hardware record: model, uuids", f"{hw.accelerator} {hw.gpu_uuids}", f"{name} {[uuid]}", "equal",
          hw.accelerator == name and hw.gpu_uuids == [uuid])
    t.near("hardware record: power limit W", hw.gpu_power_limit_w, nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000, abs_=0.5)

    t0 = ready["t0"]
    busy_rec, busy = measure(nv, h, str(index), a.pid, [cpid], t0 + 1.5, t0 + phase - 1.0)
    compare_window(t, "busy", busy_rec, busy, (85, 100))
    d = busy_rec.devices[0] if busy_rec.devices else None
    if d is not None:
        t.near("busy: engine memory MiB (NVML, engine's pids)", d.engine_memory_mib_max, busy.proc_mib.get(cpid), abs_=16)
        reserved = ready["reserved"] / 2**20
        t.add("busy: engine memory vs torch memory_reserved MiB", d.engine_memory_mib_max, f"{reserved:.0f}",
              f"reserved ≤ it ≤ reserved + {CONTEXT_MIB} (CUDA context)",
              d.engine_memory_mib_max is not None and reserved <= d.engine_memory_mib_max <= reserved + CONTEXT_MIB)
        t.add("busy: engine pids", busy_rec.engine_pids, [cpid], "the worker, found under the wrapper",
              busy_rec.engine_pids == [cpid])
    duty_rec, duty = measure(nv, h, str(index), a.pid, [cpid], t0 + phase + 1.0, t0 + 2 * phase - 0.5)
    compare_window(t, "duty 50%", duty_rec, duty, (30, 70))
    idle_rec, idle = measure(nv, h, str(index), a.pid, [cpid], t0 + 2 * phase + 1.5, t0 + 3 * phase - 0.5)
    compare_window(t, "idle", idle_rec, idle, (0, 5 if not others else 100))
    if d is not None and idle_rec.devices and idle_rec.devices[0].power_w_mean is not None:
        t.add("busy power > idle power", d.power_w_mean, idle_rec.devices[0].power_w_mean, "greater",
              (d.power_w_mean or 0) > idle_rec.devices[0].power_w_mean)
    end(a)

    # -- B: selection by UUID; a paused second process is not the engine's ------------------------------
    paused = spawn(uuid, 3.0, "idle:0")  # holds its memory until its stdin closes
    procs.append(paused)
    ready_p = expect(paused, "ready")
    for pid in (paused.pid, *_children(paused.pid)):
        os.kill(pid, signal.SIGSTOP)  # as the pool pauses the side of a live A/B not being measured
    b = spawn(uuid, 2.0, f"busy:{max(6.0, phase / 2)}")
    procs.append(b)
    ready_b = expect(b, "ready")
    mine = _selected(gpus, uuid)
    t.add(f"selection CUDA_VISIBLE_DEVICES={uuid[:12]}…", mine, f"torch GPU-{ready_b['uuid'] or '?'}",
          "one device, equal", mine == [uuid] and (not ready_b["uuid"] or mine == [f"GPU-{ready_b['uuid']}"]))
    rec_b, direct_b = measure(nv, h, uuid, b.pid, [ready_b["pid"], ready_p["pid"]], ready_b["t0"] + 1.0,
                              ready_b["t0"] + max(6.0, phase / 2) - 1.0)
    db = rec_b.devices[0] if rec_b.devices else None
    if db is not None:
        t.near("A/B: engine memory MiB = measured side only", db.engine_memory_mib_max,
               direct_b.proc_mib.get(ready_b["pid"]), abs_=16)
        both = sum(direct_b.proc_mib.values())
        t.add("A/B: device memory includes the paused side", db.device_memory_mib_max, f"≥ {both:.0f}",
              "device ≥ both processes", (db.device_memory_mib_max or 0) >= both - 16)
        t.add("A/B: engine pids", rec_b.engine_pids, [ready_b["pid"]], "the measured side only",
              rec_b.engine_pids == [ready_b["pid"]])
    end(b, paused)
    took = f"in {time.monotonic() - started:.0f} s"
    print()
    if t.failed:
        print(f"FAIL: {len(t.failed)} of {len(t.rows)} figures disagree ({took}): {', '.join(t.failed)}")
        return 1
    print(f"PASS: all {len(t.rows)} figures agree within their tolerances ({took})")
    return 0


def _selected(gpus, visible: str) -> list[str]:
    """perfgate's mapping of CUDA_VISIBLE_DEVICES=visible to NVML UUIDs."""
    nvml = gpus.load_nvml()
    try:
        return [d.uuid for d in gpus.engine_devices(nvml, visible)]
    finally:
        gpus.shutdown(nvml)


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


if __name__ == "__main__":
    sys.exit(main())
