"""The live state of one simulator process: truth records, load, fault counters and its Prometheus metrics.

``app[SIM_KEY]`` is this :class:`Sim`. It records what the server did for
every request (:class:`RequestTruth`, served at ``/sim/truth``), keeps the
in-flight count the timing model reads, the FIFO of generation slots
(``max_running``), and the process-wide counts the fault modes act on. Its
metrics carry vLLM's names, so perfgate's ``/metrics`` scraper reads the sim
as it reads vLLM.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from perfgate.sim import faults
from perfgate.sim.config import SimConfig
from perfgate.sim.request import BadRequest
from perfgate.sim.timing import boot_factor, delay_factor

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0,
            80.0, 160.0)


@dataclass
class RequestTruth:
    """What the server did for one request. Times are ``time.perf_counter()`` seconds."""

    id: str  # the key in /sim/truth
    index: int  # arrival order since start or the last /sim/reset; seeds the jitter
    api: str  # "completions" | "chat"
    stream: bool
    arrival: float  # when the handler started (request line and headers received)
    prompt_tokens: int
    max_tokens: int
    headers_sent: float | None = None  # stream only: after the response headers were written
    role_written: float | None = None  # chat stream only: after the role-only chunk was written
    # One per content chunk: {"intended": due time, "written": after the write returned, "tokens": k}.
    # Non-streaming: "written" is when the chunk was produced; nothing is sent before `done`.
    chunks: list[dict] = field(default_factory=list)
    done: float | None = None  # after the last byte ([DONE], or the whole JSON body) was written
    error: str | None = None  # set when the request did not complete (e.g. the client went away)

    @property
    def ttft_s(self) -> float | None:
        return self.chunks[0]["written"] - self.arrival if self.chunks else None

    def to_json(self) -> dict:
        return {**asdict(self), "ttft_s": self.ttft_s}


class Sim:
    """The server state: config, truth records, Prometheus metrics."""

    def __init__(self, config: SimConfig):
        self.config = config
        self.boot_factor = boot_factor(config)
        self.started = time.monotonic()
        self.truth: dict[str, RequestTruth] = {}
        self.inflight = 0
        self.waiting = 0
        self._slots: asyncio.Semaphore | None = None
        self._index = itertools.count()
        self.generation_requests = 0  # generation requests since start (faults count them; /sim/reset does not)
        self.tokens_written = 0  # content tokens written since start (faults count them)
        self.hung = asyncio.Event() if config.fault("hang-after-tokens") else None  # set: the engine is stuck
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        r = self.registry
        self.m_ttft = Histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                                labels, registry=r, buckets=_BUCKETS)
        self.m_itl = Histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                               labels, registry=r, buckets=_BUCKETS)
        self.m_e2e = Histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                               labels, registry=r, buckets=_BUCKETS)
        self.m_running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
                               labels, registry=r)
        self.m_waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                               labels, registry=r)
        self.m_gen = Counter("vllm:generation_tokens", "Number of generation tokens processed.", labels, registry=r)
        self.m_prompt = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.", labels, registry=r)
        self.m_success = Counter("vllm:request_success", "Count of successfully processed requests.",
                                 labels + ["finished_reason"], registry=r)
        name = config.model_name
        for metric in (self.m_ttft, self.m_itl, self.m_e2e, self.m_gen, self.m_prompt):
            metric.labels(name)  # exported from the start, at 0
        self.m_success.labels(name, "length")
        self.m_running.labels(name).set(0)
        self.m_waiting.labels(name).set(0)  # no queue: every request runs at once

    def factor(self) -> float:
        """Multiplier for a delay starting now."""
        return delay_factor(self.config, self.boot_factor, time.monotonic() - self.started, self.inflight)

    def open(self, header_id: str | None, api: str, stream: bool, arrival: float, prompt_tokens: int,
             max_tokens: int) -> RequestTruth:
        index = next(self._index)
        rid = header_id or f"sim-{index}"
        if rid in self.truth:  # a reused X-Request-Id must not overwrite a record
            rid = next(f"{rid}#{n}" for n in itertools.count(2) if f"{rid}#{n}" not in self.truth)
        truth = RequestTruth(rid, index, api, stream, arrival, prompt_tokens, max_tokens)
        self.truth[rid] = truth
        return truth

    def reset(self) -> None:
        self.truth.clear()
        self._index = itertools.count()

    def count_request(self) -> BadRequest | None:
        """Count a generation request; crash or refuse it when a fault says so (None: serve it)."""
        cfg = self.config
        i = self.generation_requests
        self.generation_requests += 1
        crash = cfg.fault("crash-after-requests")
        if crash is not None and i >= crash.value:
            faults.crash(f"crash-after-requests:{crash.value:g}: request {i + 1} arrived")
        status = faults.refusal_status(cfg.faults, i)
        return BadRequest(f"fault http-{status}: request {i + 1} refused", status) if status is not None else None

    def count_tokens(self, k: int) -> None:
        """Count ``k`` content tokens written; crash or hang every stream when a fault says so."""
        self.tokens_written += k
        cfg = self.config
        crash = cfg.fault("crash-after-tokens")
        if crash is not None and self.tokens_written >= crash.value:
            faults.crash(f"crash-after-tokens:{crash.value:g}: {self.tokens_written} tokens written")
        hang = cfg.fault("hang-after-tokens")
        if hang is not None and self.hung is not None and self.tokens_written >= hang.value and not self.hung.is_set():
            print(f"perfgate sim: fault hang-after-tokens:{hang.value:g}: {self.tokens_written} tokens written, "
                  "no stream writes any more", file=sys.stderr, flush=True)
            self.hung.set()

    async def acquire_slot(self) -> None:
        """Wait (FIFO) for one of ``max_running`` generation slots; :meth:`running` gives it back."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.max_running)
        name = self.config.model_name
        self.waiting += 1
        self.m_waiting.labels(name).set(self.waiting)
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
            self.m_waiting.labels(name).set(self.waiting)

    @contextmanager
    def running(self) -> Iterator[None]:
        name = self.config.model_name
        self.inflight += 1
        self.m_running.labels(name).set(self.inflight)
        try:
            yield
        finally:
            self.inflight -= 1
            self.m_running.labels(name).set(self.inflight)
            if self._slots is not None:
                self._slots.release()


SIM_KEY = web.AppKey("sim", Sim)
