"""``perfgate sim``: a reference engine whose timing is known exactly.

A **test instrument**, not an engine and not a mock of vLLM: an
OpenAI-compatible streaming server whose timing follows a small model, and
which records server-side truth (request arrival, and the intended and actual
write time of every chunk) so that a client's measurements can be checked
against it.

Timing model, per request (all delays in ms, measured from request arrival):

* the first content chunk is due at arrival + A + B·prompt_tokens
* then one chunk every C·K, each carrying K tokens (the last may carry fewer
  and is due C·k after the previous one, k being its token count)
* when F > 0, every delay × (1 + F·(in_flight − 1)); in_flight counts this
  request and is read when the delay is scheduled (at arrival for the first
  chunk, right after the previous chunk was written for the others)
* when J > 0, every delay + N(0, J) jitter (a delay never goes below 0), drawn
  from a generator seeded with (S, request index): the n-th request after a
  start or ``/sim/reset`` gets the same jitter on every run

Every request generates exactly ``max_tokens`` tokens (ignore_eos semantics).
Prompt tokens = whitespace-separated words of the prompt (for chat, of all
message contents); a prompt given as a list of token ids counts its length.

Chunks are written on absolute deadlines (``loop.time()``), never after
cumulative sleeps, so lateness does not accumulate: a late chunk does not delay
the next one's deadline. Truth timestamps are ``time.perf_counter()``, which is
CLOCK_MONOTONIC on Linux and therefore comparable with a client process's
``perf_counter`` on the same machine.

Listens on loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import itertools
import json
import math
import os
import random
import socket
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["SimConfig", "RequestTruth", "Sim", "SIM_KEY", "build_app", "count_prompt_tokens", "main", "Fault", "FAULTS",
           "parse_fault"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0,
            80.0, 160.0)
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions; used for chat too


# --------------------------------------------------------------------------- fault modes
#
# Faults make the instrument misbehave on purpose, the way engines do in the night: crash, hang, refuse,
# or send a stream that lies. They never touch the timing model: a request a fault leaves alone is timed
# exactly as without it. Counts are per process ("requests" are generation requests, the readiness probe
# included; "tokens" are content tokens written to any stream) or per stream ("chunk N" is its N-th
# content chunk, 1-based). docs/faults.md has the matrix of what perfgate makes of each.

FAULTS: dict[str, str] = {
    "exit-at-boot": "CODE: exit with CODE (default 1) before listening",
    "slow-boot": "SECONDS: sleep SECONDS before listening",
    "crash-after-requests": "N: the process exits (code 1) when generation request N+1 arrives",
    "crash-after-tokens": "N: the process exits (code 1) once N tokens were written in all",
    "hang-after-tokens": "N: once N tokens were written in all, every stream stops writing and keeps its "
                         "connection open; /health still answers",
    "http-429": "F or after=N: answer 429 to a fraction F of generation requests, or to all after the first N",
    "http-500": "F or after=N: the same with 500",
    "http-503": "F or after=N: the same with 503",
    "truncate": "N: every stream ends cleanly after N content chunks, without usage and [DONE]",
    "malformed-json": "N: every stream's chunk N is cut-off JSON (the stream goes on)",
    "oversized-chunk": "BYTES: every stream's first chunk carries BYTES of padding in one SSE event",
    "invalid-utf8": "N: every stream's chunk N holds bytes that are not UTF-8",
    "reset": "N: every stream's connection is reset (TCP RST) after N content chunks",
}
FAULT_EXIT_CODE = 1


@dataclass(frozen=True)
class Fault:
    """One fault mode: its kind and parameter (``after`` set for the "after=N" form of the http faults)."""

    kind: str
    value: float = 0.0
    after: int | None = None


def parse_fault(text: str) -> Fault:
    """``KIND[:PARAM]`` as given to ``--fault``; ValueError with one line on anything else."""
    kind, _, param = text.partition(":")
    if kind not in FAULTS:  # the sim imports nothing of perfgate (tests/unit/test_layout.py): its own hint
        import difflib

        close = difflib.get_close_matches(kind, FAULTS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(FAULTS)}"
        raise ValueError(f"unknown fault {kind!r}{hint}")
    if kind.startswith("http-") and param.startswith("after="):
        after = param[len("after="):]
        if not after.isdigit():
            raise ValueError(f"fault {kind}: after=N needs a whole number, not {after!r}")
        return Fault(kind, 1.0, int(after))
    if not param:
        if kind == "exit-at-boot":
            return Fault(kind, float(FAULT_EXIT_CODE))
        raise ValueError(f"fault {kind} needs a parameter: {kind}:{FAULTS[kind]}")
    try:
        value = float(param)
    except ValueError:
        raise ValueError(f"fault {kind}: {param!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"fault {kind}: {param!r} must be a finite number >= 0")
    if kind.startswith("http-") and not 0 < value <= 1:
        raise ValueError(f"fault {kind}: the fraction must be in (0, 1], not {param}")
    if kind in ("malformed-json", "invalid-utf8") and value < 1:
        raise ValueError(f"fault {kind}: chunk numbers start at 1")
    return Fault(kind, value)


@dataclass(frozen=True)
class SimConfig:
    """The timing model and identity of one simulator."""

    model_name: str = "sim"
    ttft_base_ms: float = 50.0  # A
    ttft_per_prompt_token_ms: float = 0.0  # B
    itl_ms: float = 5.0  # C: per token, so a chunk of K tokens is due C·K after the previous one
    tokens_per_chunk: int = 1  # K
    slowdown_per_inflight: float = 0.0  # F
    jitter_ms: float = 0.0  # J: σ of Gaussian jitter added to every delay
    seed: int = 0  # S: jitter seed
    version: str = "sim-1"  # reported by /version
    max_model_len: int = 32768  # prompt + max_tokens beyond this is a 400, as in vLLM; reported by /tokenize
    # Noise of a real machine, for the statistics' power curves (docs/sim.md): every delay is multiplied by a
    # per-boot speed factor exp(N(0, boot_sigma)) drawn once per process from (seed, boot_seed), and by
    # 1 + drift_per_min * minutes since start (a machine that warms up or throttles).
    boot_sigma: float = 0.0
    boot_seed: int = 0
    drift_per_min: float = 0.0
    # Multiplies every delay. Set through the environment (PERFGATE_SIM_INJECT_SLOWDOWN)
    # so that the engine's flags, and with them the baseline fingerprint, stay the same:
    # this is how tests inject a known regression.
    inject_slowdown: float = 1.0
    # Capacity and delivery faults (docs/sim.md): at most `max_running` requests generate at once, the rest wait
    # in arrival order (0: no limit); `eos_after` > 0 stops every request after that many tokens although
    # ignore_eos is asked (an engine that stops early); `coalesce` > 1 writes that many chunks in one write.
    max_running: int = 0
    eos_after: int = 0
    coalesce: int = 1
    faults: tuple[Fault, ...] = ()  # fault modes (--fault KIND[:PARAM]); none: a well-behaved engine

    def fault(self, kind: str) -> Fault | None:
        return next((f for f in self.faults if f.kind == kind), None)

    def __post_init__(self) -> None:
        if self.tokens_per_chunk < 1:
            raise ValueError("tokens_per_chunk must be >= 1")
        for name in ("ttft_base_ms", "ttft_per_prompt_token_ms", "itl_ms", "slowdown_per_inflight", "jitter_ms",
                     "boot_sigma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.inject_slowdown <= 0:
            raise ValueError("inject_slowdown must be > 0")
        if self.max_model_len < 1:
            raise ValueError("max_model_len must be >= 1")
        if self.max_running < 0 or self.eos_after < 0 or self.coalesce < 1:
            raise ValueError("max_running and eos_after must be >= 0, coalesce >= 1")


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


class BadRequest(Exception):
    """A request the simulator refuses, answered with vLLM's error shape."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status

    def response(self) -> web.Response:
        kind = "BadRequestError" if self.status == 400 else "Error"
        return web.json_response({"object": "error", "message": str(self), "type": kind, "param": None,
                                  "code": self.status}, status=self.status)


class Sim:
    """The server state: config, truth records, Prometheus metrics."""

    def __init__(self, config: SimConfig):
        self.config = config
        self.boot_factor = math.exp(random.Random(f"{config.seed}:boot:{config.boot_seed}").gauss(0.0, 1.0)
                                    * config.boot_sigma)
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
        drift = 1.0 + self.config.drift_per_min * (time.monotonic() - self.started) / 60.0
        return (self.config.inject_slowdown * self.boot_factor * max(drift, 0.01)
                * (1.0 + self.config.slowdown_per_inflight * max(0, self.inflight - 1)))

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


# --------------------------------------------------------------------------- requests


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return sum(len(str(p.get("text") or "").split()) for p in value if isinstance(p, dict))
    return 0


def count_prompt_tokens(body: dict) -> int:
    """The simulator's tokenizer: whitespace-separated words (chat: of all message contents)."""
    if "messages" in body:
        messages = body["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("messages must be a list of objects")
        return sum(_words(m.get("content")) for m in messages)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return len(prompt.split())
    if isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return len(prompt)  # already token ids
    raise BadRequest("prompt must be a string or a list of token ids (batched prompts are not supported)")


@dataclass(frozen=True)
class GenRequest:
    """A validated generation request."""

    api: str
    stream: bool
    prompt_tokens: int
    max_tokens: int
    include_usage: bool
    return_token_ids: bool


def parse_request(body: Any, api: str, config: SimConfig) -> GenRequest:
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    if api == "chat" and "messages" not in body:
        raise BadRequest("messages is required")
    if api == "completions" and "prompt" not in body:
        raise BadRequest("prompt is required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None and api == "chat":
        max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = _DEFAULT_MAX_TOKENS
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequest("max_tokens must be a positive integer")
    if body.get("n", 1) != 1:
        raise BadRequest("only n=1 is supported")
    prompt_tokens = count_prompt_tokens(body)
    if prompt_tokens + max_tokens > config.max_model_len:
        raise BadRequest(f"This model's maximum context length is {config.max_model_len} tokens. However, you "
                         f"requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, "
                         f"{max_tokens} in the completion). Please reduce the length of the messages or completion.")
    stream_options = body.get("stream_options") or {}
    return GenRequest(api=api, stream=bool(body.get("stream")), prompt_tokens=prompt_tokens, max_tokens=max_tokens,
                      include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
                      return_token_ids=bool(body.get("return_token_ids")))


def chunk_sizes(max_tokens: int, per_chunk: int) -> list[int]:
    return [min(per_chunk, max_tokens - i) for i in range(0, max_tokens, per_chunk)]


def base_delays_ms(config: SimConfig, prompt_tokens: int, sizes: list[int], index: int) -> list[float]:
    """Each chunk's delay after the previous deadline (the first: after arrival), before the load factor."""
    delays = [config.ttft_base_ms + config.ttft_per_prompt_token_ms * prompt_tokens]
    delays += [config.itl_ms * k for k in sizes[1:]]
    if config.jitter_ms:
        rng = random.Random(f"{config.seed}:{index}")  # str seeds hash with SHA-512: stable across processes
        delays = [max(0.0, d + rng.gauss(0.0, config.jitter_ms)) for d in delays]
    return delays


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    """Sleep until ``loop.time() >= deadline`` (an absolute deadline, not a duration)."""
    if deadline <= loop.time():
        return
    fut = loop.create_future()
    handle = loop.call_at(deadline, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        handle.cancel()


# --------------------------------------------------------------------------- responses


def _sse(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


class _Output:
    """Where the chunks go: written as SSE events, or collected into one JSON body."""

    resp: web.StreamResponse | None = None  # once created

    def __init__(self, request: web.Request, req: GenRequest, truth: RequestTruth, model: str):
        self.request, self.req, self.truth, self.model = request, req, truth, model
        self.created = int(time.time())
        self.chat = req.api == "chat"

    def _envelope(self, choices: list, **extra) -> dict:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {"id": self.truth.id, "object": kind, "created": self.created, "model": self.model,
                "choices": choices, **extra}

    async def start(self) -> None: ...

    async def chunk(self, token_ids: list[int], text: str, last: bool) -> None: ...

    async def finish(self, usage: dict) -> web.StreamResponse: ...


class _SSEOutput(_Output):
    async def start(self) -> None:
        self.resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await self.resp.prepare(self.request)  # a StreamResponse sends its headers at once
        self.truth.headers_sent = time.perf_counter()
        if self.chat:  # like vLLM: a role-only chunk before any token
            await self.resp.write(_sse(self._envelope(
                [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}])))
            self.truth.role_written = time.perf_counter()

    def event(self, token_ids: list[int], text: str, last: bool, finish: str = "length") -> dict:
        choice: dict = {"index": 0, "logprobs": None, "finish_reason": finish if last else None}
        if self.chat:
            choice["delta"] = {"content": text}
        else:
            choice["text"] = text
        if self.req.return_token_ids:
            choice["token_ids"] = token_ids
        return self._envelope([choice])

    async def chunk(self, token_ids: list[int], text: str, last: bool, hold: bool = False,
                    finish: str = "length") -> None:
        data = getattr(self, "held", b"") + _sse(self.event(token_ids, text, last, finish))
        self.held = data if hold else b""  # held events go out with a later one, in one write (coalesce)
        if not hold:
            await self.resp.write(data)
    async def faulty_chunk(self, fault: Fault, token_ids: list[int], text: str, last: bool) -> None:
        """Write this chunk the way ``fault`` garbles it (malformed-json, oversized-chunk, invalid-utf8)."""
        obj = self.event(token_ids, text, last)
        if fault.kind == "malformed-json":
            data = _sse(obj)
            data = data[: len(data) // 2] + b"\n\n"  # the JSON is cut in the middle
        elif fault.kind == "oversized-chunk":
            data = _sse({**obj, "perfgate_padding": "x" * int(fault.value)})
        else:  # invalid-utf8: two bytes that never occur in UTF-8, inside the text string
            quoted = json.dumps(text).encode()
            data = _sse(obj).replace(quoted, quoted[:-1] + b"\xff\xfe\"", 1)
        await self.resp.write(data)

    async def finish(self, usage: dict) -> web.StreamResponse:
        if self.req.include_usage:
            await self.resp.write(_sse(self._envelope([], usage=usage)))
        await self.resp.write(b"data: [DONE]\n\n")
        await self.resp.write_eof()
        return self.resp


class _JSONOutput(_Output):
    async def start(self) -> None:
        self.texts: list[str] = []
        self.ids: list[int] = []

    async def chunk(self, token_ids: list[int], text: str, last: bool, hold: bool = False,
                    finish: str = "length") -> None:
        self.finish_reason = finish
        self.texts.append(text)
        self.ids.extend(token_ids)

    async def finish(self, usage: dict) -> web.StreamResponse:
        text = "".join(self.texts)
        choice: dict = {"index": 0, "logprobs": None, "finish_reason": getattr(self, "finish_reason", "length")}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        if self.req.return_token_ids:
            choice["token_ids"] = self.ids
        body = self._envelope([choice], usage=usage)
        body["object"] = "chat.completion" if self.chat else "text_completion"
        self.resp = web.json_response(body)
        await self.resp.prepare(self.request)  # send it here, so that `done` is after the write
        await self.resp.write_eof()
        return self.resp


# --------------------------------------------------------------------------- the generation handler
#
# A request goes through three steps, each a place where a fault mode can act
# without touching the timing model:
#   1. parse and validate (-> GenRequest, or a 400);
#   2. open the truth record and the output (headers, the chat role chunk);
#   3. the chunk loop: sleep until each deadline, write, record.
# A fault that refuses a request (5xx, 429) belongs between 1 and 2; one that
# hangs, drops the stream or writes garbage belongs in the loop of 3, around
# `out.chunk`; a crash can act anywhere.


async def _generate(request: web.Request, api: str) -> web.StreamResponse:
    sim = request.app[SIM_KEY]
    cfg = sim.config
    loop = asyncio.get_running_loop()
    arrival = time.perf_counter()
    t0 = loop.time()
    try:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("body is not JSON") from None
        req = parse_request(body, api, cfg)
    except BadRequest as e:
        return e.response()

    refusal = _count_request(sim)  # fault modes that crash on, or refuse, this request
    if refusal is not None:
        return refusal
    truth = sim.open(request.headers.get("X-Request-Id"), api, req.stream, arrival, req.prompt_tokens, req.max_tokens)
    generated = min(req.max_tokens, cfg.eos_after) if cfg.eos_after else req.max_tokens
    finish = "stop" if generated < req.max_tokens else "length"
    sizes = chunk_sizes(generated, cfg.tokens_per_chunk)
    delays = base_delays_ms(cfg, req.prompt_tokens, sizes, truth.index)
    name = cfg.model_name
    sim.m_prompt.labels(name).inc(req.prompt_tokens)
    out: _Output = (_SSEOutput if req.stream else _JSONOutput)(request, req, truth, name)
    arrival_slot = arrival
    if cfg.max_running:
        await sim.acquire_slot()  # queue time: the model's delays start once a slot is free
        t0, arrival_slot = loop.time(), time.perf_counter()
    with sim.running():
        try:
            await out.start()
            deadline = t0
            next_id = 0
            held: list[dict] = []  # truth of chunks waiting to go out in one write (coalesce)
            for n, (k, delay_ms) in enumerate(zip(sizes, delays)):
                deadline += delay_ms * sim.factor() / 1000.0
                await _sleep_until(loop, deadline)
                if sim.hung is not None and sim.hung.is_set():
                    truth.error = "fault hang-after-tokens: stuck"
                    await loop.create_future()  # never done: the connection stays open, nothing more is written
                ids = list(range(next_id, next_id + k))
                next_id += k
                last = n == len(sizes) - 1
                stream_fault = _stream_fault(cfg, n) if req.stream else None
                if stream_fault is not None and stream_fault.kind in ("truncate", "reset"):
                    truth.error = f"fault {stream_fault.kind} after {n} chunks"
                    return await _cut(request, out, stream_fault.kind)
                hold = cfg.coalesce > 1 and not last and (n + 1) % cfg.coalesce != 0
                if stream_fault is not None:
                    await out.faulty_chunk(stream_fault, ids, "".join(f" t{i}" for i in ids), last=last)
                else:
                    await out.chunk(ids, "".join(f" t{i}" for i in ids), last=last, hold=hold, finish=finish)
                written = time.perf_counter()
                _count_tokens(sim, k)
                held.append({"intended": arrival_slot + (deadline - t0), "written": written, "tokens": k})
                if hold:
                    continue
                for c in held:  # a held chunk was written with this one
                    c["written"] = written
                    truth.chunks.append(c)
                    sim.m_gen.labels(name).inc(c["tokens"])
                    if len(truth.chunks) == 1:
                        sim.m_ttft.labels(name).observe(written - arrival)
                    else:
                        sim.m_itl.labels(name).observe(written - truth.chunks[-2]["written"])
                held = []
            usage = {"prompt_tokens": req.prompt_tokens, "completion_tokens": generated,
                     "total_tokens": req.prompt_tokens + generated}
            truncate = cfg.fault("truncate") if req.stream else None
            if truncate is not None and len(sizes) <= truncate.value:  # cut right before usage and [DONE]
                truth.error = f"fault truncate after {len(sizes)} chunks"
                return await _cut(request, out, "truncate")
            resp = await out.finish(usage)
            truth.done = time.perf_counter()
        except asyncio.CancelledError:
            truth.error = "cancelled"
            raise
        except ConnectionError as e:  # the client went away; aiohttp ignores it once the handler returns
            truth.error = f"client went away ({type(e).__name__})"
            return out.resp or web.Response(status=499)
    sim.m_e2e.labels(name).observe(truth.done - arrival)
    sim.m_success.labels(name, "length").inc()
    return resp


def _crash(why: str) -> None:
    """Die the way a crashed engine does: at once, mid-write, nothing flushed to clients."""
    print(f"perfgate sim: fault {why}: exiting with code {FAULT_EXIT_CODE}", file=sys.stderr, flush=True)
    os._exit(FAULT_EXIT_CODE)


def _count_request(sim: Sim) -> web.Response | None:
    """Count a generation request; crash or refuse it when a fault says so (None: serve it)."""
    cfg = sim.config
    i = sim.generation_requests
    sim.generation_requests += 1
    crash = cfg.fault("crash-after-requests")
    if crash is not None and i >= crash.value:
        _crash(f"crash-after-requests:{crash.value:g}: request {i + 1} arrived")
    for status in (429, 500, 503):
        f = cfg.fault(f"http-{status}")
        if f is None:
            continue
        # A fraction F refuses request i when floor((i+1)F) > floor(iF): exactly F of every 1/F, spread evenly.
        hit = i >= f.after if f.after is not None else math.floor((i + 1) * f.value) > math.floor(i * f.value)
        if hit:
            return BadRequest(f"fault http-{status}: request {i + 1} refused", status).response()
    return None


def _count_tokens(sim: Sim, k: int) -> None:
    sim.tokens_written += k
    cfg = sim.config
    crash = cfg.fault("crash-after-tokens")
    if crash is not None and sim.tokens_written >= crash.value:
        _crash(f"crash-after-tokens:{crash.value:g}: {sim.tokens_written} tokens written")
    hang = cfg.fault("hang-after-tokens")
    if hang is not None and sim.hung is not None and sim.tokens_written >= hang.value and not sim.hung.is_set():
        print(f"perfgate sim: fault hang-after-tokens:{hang.value:g}: {sim.tokens_written} tokens written, "
              "no stream writes any more", file=sys.stderr, flush=True)
        sim.hung.set()


def _stream_fault(cfg: SimConfig, n: int) -> Fault | None:
    """The fault that acts on a stream's content chunk ``n`` (0-based), if any."""
    for kind in ("truncate", "reset"):
        f = cfg.fault(kind)
        if f is not None and n >= f.value:
            return f
    for kind in ("malformed-json", "invalid-utf8"):
        f = cfg.fault(kind)
        if f is not None and n + 1 == f.value:
            return f
    f = cfg.fault("oversized-chunk")
    if f is not None and n == 0:
        return f
    return None


async def _cut(request: web.Request, out: _Output, kind: str) -> web.StreamResponse:
    """End a started stream early: ``truncate`` closes it cleanly, ``reset`` aborts the connection (RST)."""
    assert out.resp is not None
    if kind == "truncate":
        await out.resp.write_eof()
        return out.resp
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: close() sends RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return out.resp


async def _completions(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "completions")


async def _chat(request: web.Request) -> web.StreamResponse:
    return await _generate(request, "chat")


async def _tokenize(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    try:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("body is not JSON") from None
        if not isinstance(body, dict) or ("prompt" not in body and "messages" not in body):
            raise BadRequest("expected {\"prompt\": ...} or {\"messages\": [...]}")
        n = count_prompt_tokens(body)
    except BadRequest as e:
        return e.response()
    return web.json_response({"count": n, "max_model_len": sim.config.max_model_len, "tokens": list(range(n))})


_MODEL_ROUTES = ("/v1/completions", "/v1/chat/completions", "/tokenize")


def _access_middleware(api_key: str | None, check_model: bool, model_name: str):
    """What a deployed engine checks before a request reaches it: a bearer token (``--api-key``, like vLLM's, but on
    every route except /health and /sim/*, so a test sees that each request carries it) and the model name
    (``--check-model``: 404 for a model it does not serve, as vLLM answers)."""

    @web.middleware
    async def access(request: web.Request, handler):
        path = request.path
        if api_key is not None and path != "/health" and not path.startswith("/sim/"):
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return web.json_response({"error": "Unauthorized"}, status=401)
        if check_model and request.method == "POST" and path in _MODEL_ROUTES:
            try:
                body = await request.json()  # aiohttp keeps the body: the handler reads it again
            except (ValueError, UnicodeDecodeError):
                body = None  # the handler answers 400
            if isinstance(body, dict) and body.get("model") not in (None, model_name):
                return BadRequest(f"The model `{body['model']}` does not exist.", 404).response()
        return await handler(request)

    return access


def build_app(config: SimConfig, *, api_key: str | None = None, check_model: bool = False,
              tokenize: bool = True) -> web.Application:
    """The simulator as an aiohttp application; its state is ``app[SIM_KEY]``.

    ``api_key``, ``check_model`` and ``tokenize=False`` make it look like a deployed endpoint (token required,
    unknown model refused, no /tokenize); with none of them no middleware is in the request path.
    """
    app = web.Application()
    if api_key is not None or check_model:
        app.middlewares.append(_access_middleware(api_key, check_model, config.model_name))
    sim = Sim(config)
    app[SIM_KEY] = sim

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="")

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"version": config.version})

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": config.model_name, "object": "model", "created": 0, "owned_by": "perfgate-sim",
             "root": config.model_name, "max_model_len": config.max_model_len}]})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(sim.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def sim_config(_: web.Request) -> web.Response:
        return web.json_response(asdict(config))

    async def sim_truth(_: web.Request) -> web.Response:
        return web.json_response({rid: t.to_json() for rid, t in sim.truth.items()})

    async def sim_reset(_: web.Request) -> web.Response:
        sim.reset()
        return web.json_response({"ok": True})

    r = app.router
    r.add_post("/v1/completions", _completions)
    r.add_post("/v1/chat/completions", _chat)
    if tokenize:
        r.add_post("/tokenize", _tokenize)
    r.add_get("/health", health)
    r.add_get("/version", version)
    r.add_get("/v1/models", models)
    r.add_get("/metrics", metrics)
    r.add_get("/sim/config", sim_config)
    r.add_get("/sim/truth", sim_truth)
    r.add_post("/sim/reset", sim_reset)
    return app


def _parser() -> argparse.ArgumentParser:
    d = SimConfig()
    p = argparse.ArgumentParser(
        prog="perfgate sim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Environment: PERFGATE_SIM_INJECT_SLOWDOWN=x multiplies every delay by x without changing the "
               "flags (tests use it to inject a known regression). Endpoints and truth format: docs/sim.md.")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model-name", default=d.model_name)
    p.add_argument("--ttft-base-ms", type=float, default=d.ttft_base_ms, metavar="A")
    p.add_argument("--ttft-per-prompt-token-ms", type=float, default=d.ttft_per_prompt_token_ms, metavar="B")
    p.add_argument("--itl-ms", type=float, default=d.itl_ms, metavar="C", help="per token")
    p.add_argument("--tokens-per-chunk", type=int, default=d.tokens_per_chunk, metavar="K")
    p.add_argument("--slowdown-per-inflight", type=float, default=d.slowdown_per_inflight, metavar="F")
    p.add_argument("--jitter-ms", type=float, default=d.jitter_ms, metavar="J")
    p.add_argument("--seed", type=int, default=d.seed, metavar="S")
    p.add_argument("--version", default=d.version, metavar="V", help="reported by GET /version")
    p.add_argument("--max-model-len", type=int, default=d.max_model_len)
    p.add_argument("--boot-sigma", type=float, default=d.boot_sigma,
                   help="sigma of the log of a per-boot speed factor (boot-to-boot variance)")
    p.add_argument("--boot-seed", type=int, default=None,
                   help="draws this boot's factor (default: a new one every boot)")
    p.add_argument("--drift-per-min", type=float, default=d.drift_per_min,
                   help="delays grow by this fraction per minute since start (machine drift)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on every route but /health and /sim/* (as vLLM's --api-key)")
    p.add_argument("--check-model", action="store_true",
                   help="answer 404 for a request naming another model than --model-name (as vLLM does)")
    p.add_argument("--no-tokenize", action="store_true", help="serve no /tokenize (an engine without one)")
    p.add_argument("--fault", action="append", default=[], metavar="KIND[:PARAM]",
                   help="misbehave on purpose (repeatable): " + "; ".join(f"{k}:{v}" for k, v in FAULTS.items()))
    p.add_argument("--max-running", type=int, default=d.max_running,
                   help="at most this many requests generate at once, the rest queue (0: no limit)")
    p.add_argument("--eos-after", type=int, default=d.eos_after,
                   help="stop every request after this many tokens although ignore_eos is asked (a fault)")
    p.add_argument("--coalesce", type=int, default=d.coalesce,
                   help="write this many chunks in one write (a fault: coalesced events)")
    return p


def config_from_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, SimConfig]:
    p = _parser()
    a = p.parse_args(argv)
    try:
        faults = tuple(parse_fault(f) for f in a.fault)
        cfg = SimConfig(faults=faults, model_name=a.model_name, ttft_base_ms=a.ttft_base_ms,
                        ttft_per_prompt_token_ms=a.ttft_per_prompt_token_ms, itl_ms=a.itl_ms,
                        tokens_per_chunk=a.tokens_per_chunk, slowdown_per_inflight=a.slowdown_per_inflight,
                        jitter_ms=a.jitter_ms, seed=a.seed, version=a.version, max_model_len=a.max_model_len,
                        inject_slowdown=float(os.environ.get("PERFGATE_SIM_INJECT_SLOWDOWN", "1.0")),
                        boot_sigma=a.boot_sigma, drift_per_min=a.drift_per_min,
                        max_running=a.max_running, eos_after=a.eos_after, coalesce=a.coalesce,
                        boot_seed=a.boot_seed if a.boot_seed is not None else time.time_ns())
    except ValueError as e:
        p.error(str(e))
    return a, cfg


def main(argv: list[str] | None = None) -> int:
    a, cfg = config_from_args(argv)
    if a.host not in _LOOPBACK:
        print("perfgate sim: refusing to listen beyond loopback", file=sys.stderr)
        return 2
    if (f := cfg.fault("exit-at-boot")) is not None:
        print(f"perfgate sim: fault exit-at-boot: exiting with code {int(f.value)}", file=sys.stderr, flush=True)
        return int(f.value)
    if (f := cfg.fault("slow-boot")) is not None:
        print(f"perfgate sim: fault slow-boot: listening in {f.value:g}s", file=sys.stderr, flush=True)
        time.sleep(f.value)
    # A hung sim's handlers never finish; aiohttp's graceful shutdown would fill the log with their
    # tracebacks, so SIGTERM keeps its default action there (the process ends at once).
    web.run_app(build_app(cfg, api_key=a.api_key, check_model=a.check_model, tokenize=not a.no_tokenize), host=a.host, port=a.port, access_log=None,
                handle_signals=cfg.fault("hang-after-tokens") is None,
                # A client interrupted mid-request leaves a half-sent request on an open connection; the
                # default graceful shutdown would wait 60 s for it. A test instrument stops at once.
                shutdown_timeout=1.0,
                print=lambda *_: print(f"perfgate sim on {a.host}:{a.port}", flush=True))
    return 0

