"""``perfgate sim``: a reference engine whose timing is known exactly.

A test instrument, not an engine and not a mock of vLLM: an OpenAI-compatible
streaming server whose timing follows a small model, and which records
server-side truth (request arrival and the write time of every chunk) so that
a client's measurements can be checked against it.

Timing model, per request (all ms):

* first content chunk at arrival + A + B·prompt_tokens
* then one chunk every C·K, each carrying K tokens (the last may carry fewer)
* every delay × (1 + F·(in_flight − 1)) when F > 0 (load-dependent slowdown)
* plus seeded Gaussian jitter of σ = J per gap when J > 0 (deterministic per request)

Chunks are written on absolute deadlines (``loop.time()``), so errors do not
accumulate. Prompt tokens = whitespace-separated words of the prompt (for chat,
of all message contents). Truth timestamps are ``time.perf_counter()``, which
is CLOCK_MONOTONIC on Linux and therefore comparable with a client process's
``perf_counter`` on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0)


@dataclass(frozen=True)
class SimConfig:
    model_name: str = "sim"
    ttft_base_ms: float = 50.0  # A
    ttft_per_prompt_token_ms: float = 0.0  # B
    itl_ms: float = 5.0  # C
    tokens_per_chunk: int = 1  # K
    slowdown_per_inflight: float = 0.0  # F
    jitter_ms: float = 0.0  # J
    seed: int = 0
    version: str = "sim-1"
    max_model_len: int = 32768
    # Multiplies every delay. Set through the environment (PERFGATE_SIM_INJECT_SLOWDOWN)
    # so that the engine's flags, and with them the baseline fingerprint, stay the same:
    # this is how tests inject a known regression.
    inject_slowdown: float = 1.0


@dataclass
class RequestTruth:
    id: str
    api: str
    arrival: float  # perf_counter when the handler started
    prompt_tokens: int
    max_tokens: int
    chunks: list[dict] = field(default_factory=list)  # {"intended", "written", "tokens"}
    done: float | None = None

    @property
    def ttft_s(self) -> float | None:
        return self.chunks[0]["written"] - self.arrival if self.chunks else None


class Sim:
    """The server state: config, truth records, Prometheus metrics."""

    def __init__(self, config: SimConfig):
        self.config = config
        self.truth: dict[str, RequestTruth] = {}
        self.inflight = 0
        self._ids = itertools.count()
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        self.m_ttft = Histogram("vllm:time_to_first_token_seconds", "TTFT", labels, registry=self.registry, buckets=_BUCKETS)
        self.m_itl = Histogram("vllm:inter_token_latency_seconds", "ITL", labels, registry=self.registry, buckets=_BUCKETS)
        self.m_e2e = Histogram("vllm:e2e_request_latency_seconds", "E2E", labels, registry=self.registry, buckets=_BUCKETS)
        self.m_running = Gauge("vllm:num_requests_running", "running", labels, registry=self.registry)
        self.m_gen = Counter("vllm:generation_tokens", "generated tokens", labels, registry=self.registry)
        self.m_prompt = Counter("vllm:prompt_tokens", "prompt tokens", labels, registry=self.registry)

    def factor(self) -> float:
        return self.config.inject_slowdown * (1.0 + self.config.slowdown_per_inflight * max(0, self.inflight - 1))


def _count_words(body: dict) -> int:
    if "messages" in body:
        return sum(len(str(m.get("content") or "").split()) for m in body["messages"])
    prompt = body.get("prompt", "")
    return len(prompt.split()) if isinstance(prompt, str) else len(prompt)


def _sse(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _generate(request: web.Request, api: str) -> web.StreamResponse:
    sim: Sim = request.app["sim"]
    cfg = sim.config
    arrival = time.perf_counter()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return web.json_response({"object": "error", "message": "body is not JSON", "code": 400}, status=400)
    if not isinstance(body.get("max_tokens", 16), int) or body.get("max_tokens", 16) < 1:
        return web.json_response({"object": "error", "message": "max_tokens must be a positive integer", "code": 400}, status=400)
    rid = request.headers.get("X-Request-Id") or f"sim-{next(sim._ids)}"
    prompt_tokens = _count_words(body)
    max_tokens = int(body.get("max_tokens", 16))
    truth = RequestTruth(rid, api, arrival, prompt_tokens, max_tokens)
    sim.truth[rid] = truth
    rng = random.Random(f"{cfg.seed}:{rid}")
    sim.inflight += 1
    sim.m_running.labels(cfg.model_name).set(sim.inflight)
    sim.m_prompt.labels(cfg.model_name).inc(prompt_tokens)
    created = int(time.time())
    obj_kind = "chat.completion.chunk" if api == "chat" else "text_completion"
    with_ids = bool(body.get("return_token_ids"))
    stream = bool(body.get("stream"))
    try:
        sizes = [min(cfg.tokens_per_chunk, max_tokens - i) for i in range(0, max_tokens, cfg.tokens_per_chunk)]
        resp = None
        if stream:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            await resp.prepare(request)
            if api == "chat":  # like vLLM: a role-only chunk before any token
                await resp.write(_sse({"id": rid, "object": obj_kind, "created": created, "model": cfg.model_name,
                                       "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}))
        deadline = t0
        next_token = 0
        texts = []
        for n, k in enumerate(sizes):
            gap_ms = (cfg.ttft_base_ms + cfg.ttft_per_prompt_token_ms * prompt_tokens) if n == 0 else cfg.itl_ms * k
            if cfg.jitter_ms:
                gap_ms = max(0.0, gap_ms + rng.gauss(0.0, cfg.jitter_ms))
            deadline += gap_ms * sim.factor() / 1000.0
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            intended = arrival + (deadline - t0)
            ids = list(range(next_token, next_token + k))
            next_token += k
            text = "".join(f" t{i}" for i in ids)
            texts.append(text)
            if resp is not None:
                choice: dict = {"index": 0, "finish_reason": "length" if n == len(sizes) - 1 else None}
                if api == "chat":
                    choice["delta"] = {"content": text}
                else:
                    choice["text"] = text
                if with_ids:
                    choice["token_ids"] = ids
                await resp.write(_sse({"id": rid, "object": obj_kind, "created": created, "model": cfg.model_name,
                                       "choices": [choice]}))
            written = time.perf_counter()
            truth.chunks.append({"intended": intended, "written": written, "tokens": k})
            if n == 0:
                sim.m_ttft.labels(cfg.model_name).observe(written - arrival)
            else:
                sim.m_itl.labels(cfg.model_name).observe(written - truth.chunks[-2]["written"])
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": max_tokens, "total_tokens": prompt_tokens + max_tokens}
        sim.m_gen.labels(cfg.model_name).inc(max_tokens)
        if resp is None:
            msg = {"role": "assistant", "content": "".join(texts)}
            choice = {"index": 0, "finish_reason": "length", **({"message": msg} if api == "chat" else {"text": msg["content"]})}
            out = web.json_response({"id": rid, "object": "chat.completion" if api == "chat" else "text_completion",
                                     "created": created, "model": cfg.model_name, "choices": [choice], "usage": usage})
        else:
            if (body.get("stream_options") or {}).get("include_usage"):
                await resp.write(_sse({"id": rid, "object": obj_kind, "created": created, "model": cfg.model_name,
                                       "choices": [], "usage": usage}))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            out = resp
        truth.done = time.perf_counter()
        sim.m_e2e.labels(cfg.model_name).observe(truth.done - arrival)
        return out
    finally:
        sim.inflight -= 1
        sim.m_running.labels(cfg.model_name).set(sim.inflight)


async def _completions(request):
    return await _generate(request, "completions")


async def _chat(request):
    return await _generate(request, "chat")


async def _tokenize(request: web.Request) -> web.Response:
    sim: Sim = request.app["sim"]
    body = await request.json()
    n = _count_words(body)
    return web.json_response({"count": n, "tokens": list(range(n)), "max_model_len": sim.config.max_model_len})


def build_app(config: SimConfig) -> web.Application:
    app = web.Application()
    sim = Sim(config)
    app["sim"] = sim
    r = app.router
    r.add_post("/v1/completions", _completions)
    r.add_post("/v1/chat/completions", _chat)
    r.add_post("/tokenize", _tokenize)
    r.add_get("/health", lambda _: web.Response(text=""))
    r.add_get("/version", lambda _: web.json_response({"version": config.version}))
    r.add_get("/v1/models", lambda _: web.json_response(
        {"object": "list", "data": [{"id": config.model_name, "object": "model", "owned_by": "perfgate-sim"}]}))
    r.add_get("/metrics", lambda _: web.Response(body=generate_latest(sim.registry), content_type="text/plain"))
    r.add_get("/sim/config", lambda _: web.json_response(asdict(config)))
    r.add_get("/sim/truth", lambda _: web.json_response(
        {rid: {**{k: v for k, v in asdict(t).items()}, "ttft_s": t.ttft_s} for rid, t in sim.truth.items()}))

    async def reset(_):
        sim.truth.clear()
        return web.json_response({"ok": True})

    r.add_post("/sim/reset", reset)
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="perfgate sim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model-name", default="sim")
    p.add_argument("--ttft-base-ms", type=float, default=50.0)
    p.add_argument("--ttft-per-prompt-token-ms", type=float, default=0.0)
    p.add_argument("--itl-ms", type=float, default=5.0)
    p.add_argument("--tokens-per-chunk", type=int, default=1)
    p.add_argument("--slowdown-per-inflight", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--version", default="sim-1")
    a = p.parse_args(argv)
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        print("perfgate sim: refusing to listen beyond loopback", file=sys.stderr)
        return 2
    cfg = SimConfig(a.model_name, a.ttft_base_ms, a.ttft_per_prompt_token_ms, a.itl_ms, a.tokens_per_chunk,
                    a.slowdown_per_inflight, a.jitter_ms, a.seed, a.version,
                    inject_slowdown=float(os.environ.get("PERFGATE_SIM_INJECT_SLOWDOWN", "1.0")))
    web.run_app(build_app(cfg), host=a.host, port=a.port, print=lambda *_: print(f"perfgate sim on {a.host}:{a.port}", flush=True),
                access_log=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
