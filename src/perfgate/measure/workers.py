"""Multi-process load: N worker processes drive one load, for loads one core cannot drive.

Why processes: one Python process saturates one core (the event loop, the
GIL). Each worker runs :func:`perfgate.measure.loadgen.run_load_async` on its
share of the requests, in its own process with its own event loop.

* **One clock.** Every timestamp is ``time.perf_counter()``, which on Linux
  reads ``CLOCK_MONOTONIC``: system-wide, so the workers' timelines (and the
  parent's window start) are on one clock and merge by plain sorting
  (``clock_is_shared`` checks the implementation; tests check a child's
  reading against the parent's).
* **One start.** Each worker warms up and opens its connections, then reports
  ready; the parent calls ``on_measure_start`` once and sends every worker the
  same start time a few ms ahead.
* **The split.** Open loop: the arrival schedule is drawn once for the whole
  run and dealt out request by request (request i to worker i mod N), so the
  merged sends follow exactly the schedule one process would have followed;
  ``max_concurrency`` is split like the closed loop's concurrency. Closed loop:
  concurrency is split as evenly as possible (shares differ by at most one)
  and requests are dealt in proportion to the shares.
* **The merge.** One :class:`LoadRun`: requests in index order, warm-up
  concatenated, window from the common start to the last ``done_at``,
  ``cpu_s`` summed over workers, ``loop_lag_ms`` the worst worker's samples
  (the health check judges the worst worker: one stalled loop distorts its own
  reads), and every worker's figures in ``client["per_worker"]``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence

import numpy as np

# Nothing of loadgen is imported here (it imports this module): the per-process runner, the
# specs and the drawn schedule come in as arguments; LoadRun objects are only read and copied.


class LoadClientError(RuntimeError):
    """The load client itself failed (a worker died or raised; no shared clock): one line, never a traceback."""


_START_MARGIN_S = 0.05  # between the start signal and the window start: every worker is waiting by then


def clock_is_shared() -> bool:
    """Is perf_counter a system-wide clock here (CLOCK_MONOTONIC), so processes can share timelines?"""
    return "CLOCK_MONOTONIC" in time.get_clock_info("perf_counter").implementation


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` into ``parts`` integers differing by at most one, larger first."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def deal(n: int, shares: Sequence[int]) -> list[list[int]]:
    """Indices 0..n-1 dealt to workers in proportion to ``shares``, interleaved (greedy, lowest load first)."""
    out: list[list[int]] = [[] for _ in shares]
    for i in range(n):
        w = min(range(len(shares)), key=lambda k: (len(out[k]) + 1) / shares[k])
        out[w].append(i)
    return out


def _worker(conn, run_load: Callable, base_url: str, specs: list, warmup: list, kwargs: dict) -> None:
    """One worker process: warm up, report ready, wait for the start time, run, send the LoadRun back."""
    def barrier() -> float:
        conn.send(("ready", None))
        return conn.recv()

    try:
        run = run_load(base_url, specs, warmup_specs=warmup or None, barrier=barrier, **kwargs)
        conn.send(("done", run))
    except BaseException as exc:  # report, don't hang the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_load_workers(
    run_load: Callable,
    base_url: str,
    specs: list,
    *,
    workers: int,
    concurrency: int | None = None,
    request_rate: float | None = None,
    schedule: Sequence[float] | None = None,
    max_concurrency: int | None = None,
    warmup_specs: list | None = None,
    on_measure_start: Callable[[], object] | None = None,
    **kwargs,
):
    """Run one load over ``workers`` processes, each calling ``run_load`` (loadgen's), and merge the runs.

    ``schedule``: the open loop's send offsets for all of ``specs``, drawn once by the caller.
    """
    if (concurrency is None) == (request_rate is None):
        raise ValueError("give exactly one of concurrency (closed loop) or request_rate (open loop)")
    if not clock_is_shared():
        raise LoadClientError("multi-process load needs a system-wide perf_counter (CLOCK_MONOTONIC); "
                           f"this platform's is {time.get_clock_info('perf_counter').implementation}")
    cap = concurrency or max_concurrency
    n = max(1, min(workers, cap or workers, len(specs)))
    shares = split_evenly(cap, n) if cap else [1] * n
    dealt = deal(len(specs), shares) if concurrency is not None else [list(range(w, len(specs), n)) for w in range(n)]
    offsets = np.asarray(schedule) if request_rate is not None else None
    warm = warmup_specs or []
    warm_dealt = deal(len(warm), shares) if warm else [[] for _ in range(n)]
    ctx = mp.get_context("spawn")  # not fork: the parent may run sampler threads
    procs, conns = [], []
    try:
        for w in range(n):
            kw = dict(kwargs)
            if concurrency is not None:
                kw["concurrency"] = shares[w]
            else:
                kw["request_rate"] = request_rate
                kw["schedule"] = offsets[dealt[w]]
                if max_concurrency:
                    kw["max_concurrency"] = shares[w]
            parent_end, child_end = ctx.Pipe()
            p = ctx.Process(target=_worker, name=f"perfgate-load-{w}", daemon=True,
                            args=(child_end, run_load, base_url, [specs[i] for i in dealt[w]], [warm[i] for i in warm_dealt[w]], kw))
            p.start()
            child_end.close()
            procs.append(p)
            conns.append(parent_end)
        for w, c in enumerate(conns):
            kind, payload = _recv(c, procs[w])
            if kind != "ready":
                raise LoadClientError(f"load worker {w}: {payload}")
        if on_measure_start is not None:
            on_measure_start()
        start = time.perf_counter() + _START_MARGIN_S
        for c in conns:
            c.send(start)
        runs: list = []
        for w, c in enumerate(conns):
            kind, payload = _recv(c, procs[w])
            if kind != "done":
                raise LoadClientError(f"load worker {w}: {payload}")
            runs.append(payload)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    return merge_runs(runs, start, request_rate)


def _recv(conn, proc) -> tuple[str, object]:
    while not conn.poll(0.2):
        if not proc.is_alive() and not conn.poll(0):
            return "error", f"exited with status {proc.exitcode} before reporting"
    try:
        return conn.recv()
    except EOFError:
        return "error", "closed its pipe"


def merge_runs(runs: list, start: float, requested_rate: float | None):
    """Workers' runs → one run on the shared clock."""
    requests = sorted((r for run in runs for r in run.requests), key=lambda r: r.index)
    warmup = [r for run in runs for r in run.warmup]
    ends = [run.end for run in runs if run.requests]
    p99 = [float(np.percentile(run.loop_lag_ms, 99)) if run.loop_lag_ms else None for run in runs]
    worst = max(range(len(runs)), key=lambda k: p99[k] if p99[k] is not None else -1.0)
    info = dict(runs[0].client)
    info.update(workers=len(runs), per_worker=[
        {"requests": len(run.requests), "cpu_s": run.cpu_s, "loop_lag_ms_p99": p99[k],
         "prewarmed_connections": run.client.get("prewarmed_connections")}
        for k, run in enumerate(runs)])
    info.pop("prewarmed_connections", None)
    return dataclasses.replace(
        runs[0], requests=requests, warmup=warmup, start=start, end=max(ends) if ends else start,
        loop_lag_ms=list(runs[worst].loop_lag_ms), cpu_s=sum(run.cpu_s for run in runs),
        requested_rate=requested_rate, client=info,
        pool_exhausted=any(getattr(run, "pool_exhausted", False) for run in runs),  # any worker ran dry
    )
