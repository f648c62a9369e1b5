"""Streaming load generation with a minimal hot path.

Inside the measurement window a request only records its send time and
``(timestamp, raw bytes)`` for every read; request bodies are serialized
before the window and SSE is parsed after it (:mod:`perfgate.measure.sse`). The HTTP path is
:mod:`perfgate.measure.httpclient` (``http_client="aiohttp"`` keeps aiohttp's),
on uvloop when importable; ``run_load(workers=N)`` spreads one load over N
processes (:mod:`perfgate.measure.workers`).

Two arrival models:
* closed loop — ``concurrency`` workers, each sends its next request when the
  previous one finishes;
* open loop — requests are sent on an absolute schedule drawn from a gamma
  process (shape ``burstiness``; 1.0 is Poisson) at ``request_rate`` req/s,
  regardless of how many are in flight. ``scheduled_at`` is kept so schedule
  lag (actual − scheduled send) shows when the client, not the engine, fell
  behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import numpy as np

from perfgate.measure.httpclient import RawClient
from perfgate.measure.records import ErrorKind, RawRequest, retry_after_seconds, status_kind
from perfgate.measure.throttle import ThrottleRetry

_LOOP_PROBE_INTERVAL_S = 0.005


@dataclass(frozen=True)
class RequestSpec:
    """One request, fully prepared before the run."""

    index: int
    path: str  # /v1/completions or /v1/chat/completions
    body: bytes  # serialized JSON

    @classmethod
    def build(cls, index: int, path: str, payload: dict) -> "RequestSpec":
        return cls(index, path, json.dumps(payload).encode())


@dataclass
class LoadRun:
    """Everything recorded during one load run (warm-up excluded from ``requests``)."""

    requests: list[RawRequest]
    warmup: list[RawRequest]
    start: float  # perf_counter at the start of the measured window
    end: float
    loop_lag_ms: list[float]  # one sample per probe wake-up (every ~5 ms)
    cpu_s: float  # this process's CPU time (user+sys) inside the measured window
    requested_rate: float | None
    pool_exhausted: bool = False  # a duration run ran out of prepared requests before the duration ended
    # How the client ran (event loop, HTTP path, connections, worker processes): Result.client.
    client: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.end - self.start


def arrival_offsets(n: int, rate: float, burstiness: float, seed: int) -> np.ndarray:
    """Absolute send offsets (s) of ``n`` requests: gamma inter-arrivals with mean 1/rate.

    The first request goes at 0. Shape = burstiness (1.0 = Poisson, <1 burstier,
    >1 more regular), scale = 1/(rate·shape) so the mean rate is exact in expectation.
    """
    if rate <= 0 or burstiness <= 0:
        raise ValueError("request_rate and burstiness must be > 0")
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def ramp_offsets(n: int, rate0: float, rate1: float, ramp_s: float, burstiness: float, seed: int) -> np.ndarray:
    """Send offsets (s) whose rate rises linearly from ``rate0`` to ``rate1`` over ``ramp_s``, then stays.

    Time change of a unit-rate gamma process (shape ``burstiness``): the i-th
    arrival is at Λ⁻¹(uᵢ) with Λ(t) = rate0·t + (rate1 − rate0)·t²/(2·ramp_s),
    the expected number of arrivals by t. The first request goes at 0.
    """
    if min(rate0, rate1) <= 0 or burstiness <= 0 or ramp_s <= 0:
        raise ValueError("ramp rates, burstiness and the ramp duration must be > 0")
    u = arrival_offsets(n, 1.0, burstiness, seed)
    a = (rate1 - rate0) / (2.0 * ramp_s)
    at_end = ramp_s * (rate0 + rate1) / 2.0  # Λ(ramp_s)
    out = np.empty_like(u)
    inside = u <= at_end
    if a == 0:
        out[inside] = u[inside] / rate0
    else:
        out[inside] = (-rate0 + np.sqrt(rate0 * rate0 + 4.0 * a * u[inside])) / (2.0 * a)
    out[~inside] = ramp_s + (u[~inside] - at_end) / rate1
    return out


def _past(deadline: float | None, rec: RawRequest) -> bool:
    """True (and ``rec`` marked as a timeout, never sent) when the trial's deadline has passed."""
    if deadline is None or asyncio.get_running_loop().time() < deadline:
        return False
    rec.sent_at = rec.done_at = time.perf_counter()
    rec.error = ErrorKind.TIMEOUT
    rec.error_detail = "not sent: the trial deadline had passed"
    return True


async def _send(session: aiohttp.ClientSession, base_url: str, spec: RequestSpec, rec: RawRequest, timeout_s: float,
                deadline: float | None = None) -> None:
    """The hot path. Record timestamps and raw bytes; interpret nothing.

    ``deadline`` (event-loop time) is the trial's: a request in flight then is cut off as a timeout.
    """
    if isinstance(session, ThrottleRetry):  # the retry policy for 429/503 (measure/throttle.py)
        return await session.send(lambda: _send(session.inner, base_url, spec, rec, timeout_s, deadline), rec,
                                  deadline)
    if isinstance(session, RawClient):  # the lean path (measure/httpclient.py), same records
        return await session.send(spec, rec, timeout_s, deadline)
    perf = time.perf_counter
    chunks = rec.chunks
    try:
        async with asyncio.timeout(timeout_s) as scope:
            if deadline is not None and deadline < (scope.when() or deadline):
                scope.reschedule(deadline)
            # Stamped before the request is handed to aiohttp: an early stamp can only over-state
            # TTFT, while aiohttp's headers-sent hook runs after the server may already have the
            # request and would under-state it (docs/accuracy.md).
            rec.sent_at = perf()
            async with session.post(
                base_url + spec.path, data=spec.body,
                headers={"Content-Type": "application/json", "X-Request-Id": f"perfgate-{spec.index}"},
            ) as resp:
                rec.status = resp.status
                rec.content_type = resp.headers.get("Content-Type", "").lower() or None
                if "Retry-After" in resp.headers:
                    rec.retry_after_s = retry_after_seconds(resp.headers["Retry-After"])
                if resp.status != 200:
                    body = await resp.read()
                    rec.done_at = perf()
                    rec.error = status_kind(resp.status)
                    rec.error_detail = body[:300].decode("utf-8", errors="replace")
                    return
                async for data in resp.content.iter_any():
                    chunks.append((perf(), data))
                rec.done_at = perf()
    except TimeoutError:
        rec.timed_out(perf(), timeout_s,
                      deadline is not None and asyncio.get_running_loop().time() >= deadline - 0.01)
    except aiohttp.ClientConnectorError as exc:
        rec.done_at = perf()
        rec.error = ErrorKind.CONNECT
        rec.error_detail = str(exc)[:300]
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionResetError) as exc:
        rec.done_at = perf()
        rec.error = ErrorKind.MID_STREAM if rec.status == 200 else ErrorKind.CONNECT
        rec.error_detail = f"{type(exc).__name__}: {exc}"[:300]
    except aiohttp.ClientError as exc:
        rec.done_at = perf()
        rec.error = ErrorKind.MID_STREAM if rec.status == 200 else ErrorKind.PROTOCOL
        rec.error_detail = f"{type(exc).__name__}: {exc}"[:300]


async def _loop_probe(stop: asyncio.Event, out: list[float]) -> None:
    """Measure event-loop stalls: how late (ms) each short sleep wakes up."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(_LOOP_PROBE_INTERVAL_S)
        out.append(max(0.0, time.perf_counter() - t - _LOOP_PROBE_INTERVAL_S) * 1000.0)


def _new_record(spec: RequestSpec, warmup: bool) -> RawRequest:
    return RawRequest(
        index=spec.index, scheduled_at=None, sent_at=0.0, warmup=warmup,
    )


async def _closed_loop(session, base_url, specs, concurrency, timeout_s, warmup, deadline=None,
                       send_until=None) -> list[RawRequest]:
    records = [_new_record(s, warmup) for s in specs]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(specs)):
        queue.put_nowait(i)

    async def worker() -> None:
        while True:
            if send_until is not None and time.perf_counter() >= send_until:
                return  # a duration run: nothing new is sent after the window
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if not _past(deadline, records[i]):
                await _send(session, base_url, specs[i], records[i], timeout_s, deadline)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(specs))))))
    if send_until is not None:
        records = [r for r in records if r.sent_at]  # never sent: not part of the run
    return records


async def _open_loop(session, base_url, specs, offsets, start, timeout_s, max_concurrency,
                     deadline=None) -> list[RawRequest]:
    records = [_new_record(s, False) for s in specs]
    limiter = asyncio.Semaphore(max_concurrency) if max_concurrency else None
    loop = asyncio.get_running_loop()
    perf_to_loop = loop.time() - time.perf_counter()

    async def one(i: int) -> None:
        records[i].scheduled_at = start + float(offsets[i])
        delay = records[i].scheduled_at + perf_to_loop - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        while (early := records[i].scheduled_at - time.perf_counter()) > 0:  # uvloop's clock has 1 ms steps
            await asyncio.sleep(early)
        if limiter:
            async with limiter:
                if not _past(deadline, records[i]):
                    await _send(session, base_url, specs[i], records[i], timeout_s, deadline)
        elif not _past(deadline, records[i]):
            await _send(session, base_url, specs[i], records[i], timeout_s, deadline)

    await asyncio.gather(*(one(i) for i in range(len(specs))))
    return records


async def run_load_async(
    base_url: str,
    specs: list[RequestSpec],
    *,
    concurrency: int | None = None,
    request_rate: float | None = None,
    burstiness: float = 1.0,
    max_concurrency: int | None = None,
    seed: int = 0,
    warmup_specs: list[RequestSpec] | None = None,
    timeout_s: float = 600.0,
    on_measure_start: Callable[[], object] | None = None,
    headers: dict[str, str] | None = None,
    duration_s: float | None = None,
    ramp_to_rate: float | None = None,
    trial_timeout_s: float | None = None,
    http_client: str = "raw",
    prewarm: bool = True,
    schedule: Sequence[float] | None = None,
    barrier: Callable[[], float] | None = None,
    throttle_retries: int = 0,
) -> LoadRun:
    """Warm up, then call ``on_measure_start`` (e.g. scrape /metrics), then run the measured load.

    ``headers`` go on every request (an endpoint's auth header); they are set once on the client, not per send.
    ``duration_s``: send from ``specs`` (the prepared pool) until that many
    seconds have passed; requests sent in the window are counted and allowed
    to finish, the rest are never sent (``LoadRun.pool_exhausted`` when the
    pool ran out first). ``ramp_to_rate``: open loop only, the rate rises
    linearly from ``request_rate`` to it over the run (:func:`ramp_offsets`).
    ``timeout_s`` bounds each request; ``trial_timeout_s`` bounds the whole call, warm-up included: what
    is in flight then is cut off and what was not sent is not sent, both recorded as timeouts.
    ``throttle_retries`` > 0: a 429/503 is sent again that many times at most (measure/throttle.py).
    ``http_client``: ``"raw"`` (measure/httpclient.py, the default) or ``"aiohttp"``.
    ``prewarm``: open the connections the load needs before the window (raw client only),
    so TCP setup is not counted as TTFT. ``schedule``: open-loop send offsets (s) to use
    instead of drawing them (a worker process gets its share of one drawn schedule).
    ``barrier``: called after ``on_measure_start``; returns the ``perf_counter`` time at
    which the window starts, and the run waits until then (worker processes start together).
    """
    if ramp_to_rate is not None and request_rate is None:
        raise ValueError("ramp_to_rate needs request_rate (open loop)")
    if (concurrency is None) == (request_rate is None):
        raise ValueError("give exactly one of concurrency (closed loop) or request_rate (open loop)")
    if http_client not in ("raw", "aiohttp"):
        raise ValueError(f"http_client must be 'raw' or 'aiohttp', not {http_client!r}")
    deadline = asyncio.get_running_loop().time() + trial_timeout_s if trial_timeout_s else None
    limit = concurrency or max_concurrency or 0
    loop = asyncio.get_running_loop()
    info: dict = {"event_loop": _loop_name(loop), "http_client": http_client, "workers": 1}
    if http_client == "raw":
        session = RawClient(base_url, headers=headers)
        session.prepare([*specs, *(warmup_specs or [])])  # request bytes per run, not per send
    else:
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, force_close=False, enable_cleanup_closed=True)
        # No total timeout on the session: each request has its own deadline.
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                        auto_decompress=False, headers=headers or None)
    try:
        warm = []
        if warmup_specs:
            warm = await _closed_loop(session, base_url, warmup_specs, concurrency or max_concurrency or 4, timeout_s, True,
                                      deadline)
        if prewarm and isinstance(session, RawClient):
            # Open loop without a cap: as many connections as requests, at most 256 (more open on demand).
            info["prewarmed_connections"] = await session.prewarm(limit or min(len(specs), 256))
        if throttle_retries > 0:
            session = ThrottleRetry(session, throttle_retries)
        exhausted = False
        if concurrency is None:  # drawn before the window opens: a first draw takes ~15 ms
            if schedule is not None:  # a worker's share of one drawn schedule (ramp and duration applied there)
                offsets = np.asarray(schedule, dtype=float)
                if duration_s is not None:
                    keep = int(np.searchsorted(offsets, duration_s, side="left"))
                    specs, offsets = specs[:keep], offsets[:keep]
            else:
                if ramp_to_rate is not None:
                    ramp_s = duration_s or 2.0 * len(specs) / (request_rate + ramp_to_rate)
                    offsets = ramp_offsets(len(specs) + 1, request_rate, ramp_to_rate, ramp_s, burstiness, seed)
                else:
                    offsets = arrival_offsets(len(specs) + 1, request_rate, burstiness, seed)
                if duration_s is not None:
                    exhausted = bool(offsets[len(specs)] < duration_s)  # the pool's next request was still due
                    keep = int(np.searchsorted(offsets[:len(specs)], duration_s, side="left"))
                    specs = specs[:keep]
                offsets = offsets[:len(specs)]
        if on_measure_start is not None:
            on_measure_start()
        stop = asyncio.Event()
        lag: list[float] = []
        if barrier is not None:
            start_at = barrier()
            while (early := start_at - time.perf_counter()) > 0:
                await asyncio.sleep(early)
        probe = asyncio.create_task(_loop_probe(stop, lag))
        start = time.perf_counter() if barrier is None else start_at
        cpu0 = time.process_time()
        if concurrency is not None:
            send_until = start + duration_s if duration_s is not None else None
            records = await _closed_loop(session, base_url, specs, concurrency, timeout_s, False, deadline, send_until)
            if duration_s is not None and len(records) == len(specs):
                last = max((r.done_at or r.sent_at) for r in records) if records else start
                exhausted = last < start + duration_s
        else:
            records = await _open_loop(session, base_url, specs, offsets, start, timeout_s, max_concurrency,
                                       deadline)
        end = max((r.done_at or r.sent_at) for r in records) if records else time.perf_counter()
        cpu_s = time.process_time() - cpu0
        stop.set()
        await probe
    finally:
        await session.close()
    return LoadRun(
        requests=records, warmup=warm, start=start, end=end, loop_lag_ms=lag, cpu_s=cpu_s,
        requested_rate=request_rate, client=info, pool_exhausted=exhausted,
    )


def _loop_name(loop: asyncio.AbstractEventLoop) -> str:
    if type(loop).__module__.startswith("uvloop"):
        import uvloop

        return f"uvloop {uvloop.__version__}"
    return "asyncio"


def _loop_factory(use_uvloop: bool):
    """uvloop's loop when asked for and importable, else asyncio's default."""
    if not use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_load(base_url: str, specs: list[RequestSpec], *, workers: int = 1, uvloop: bool = True, **kwargs) -> LoadRun:
    """Synchronous wrapper around :func:`run_load_async` (runs its own event loop).

    ``uvloop``: run on uvloop's event loop when it is importable (recorded in
    ``LoadRun.client``). ``workers`` > 1: split the load over that many processes
    (:mod:`perfgate.measure.workers`).

    The main task returns None on purpose: on Python 3.11, ``asyncio.run``'s
    SIGINT bookkeeping formats the main task's repr, result included, which
    for a large run meant printing every raw read (5% of the client's CPU).
    """
    out: list[LoadRun] = []

    async def main() -> None:
        out.append(await run_load_async(base_url, specs, **kwargs))

    if workers > 1:
        from perfgate.measure.workers import run_load_workers

        exhausted = False
        if kwargs.get("request_rate") is not None and kwargs.get("schedule") is None:  # drawn once, dealt out
            n = len(specs) + 1  # one more than the pool: was the pool's next request still due in the duration?
            if kwargs.get("ramp_to_rate") is not None:
                r0, r1 = kwargs["request_rate"], kwargs["ramp_to_rate"]
                ramp_s = kwargs.get("duration_s") or 2.0 * len(specs) / (r0 + r1)
                drawn = ramp_offsets(n, r0, r1, ramp_s, kwargs.get("burstiness", 1.0), kwargs.get("seed", 0))
            else:
                drawn = arrival_offsets(n, kwargs["request_rate"], kwargs.get("burstiness", 1.0), kwargs.get("seed", 0))
            exhausted = kwargs.get("duration_s") is not None and bool(drawn[-1] < kwargs["duration_s"])
            kwargs["schedule"] = drawn[:-1]
        run = run_load_workers(run_load, base_url, specs, workers=workers, uvloop=uvloop, **kwargs)
        if exhausted and not run.pool_exhausted:
            run = dataclasses.replace(run, pool_exhausted=True)
        return run
    with asyncio.Runner(loop_factory=_loop_factory(uvloop)) as runner:
        runner.run(main())
    return out[0]
