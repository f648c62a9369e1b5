"""The generation handler: one request through the timing model, chunk by chunk, on absolute deadlines.

A request goes through three steps, each a place where a fault mode can act
without touching the timing model:

1. parse and validate (-> GenRequest, or a 400); then the request is counted,
   and a fault may crash on it or refuse it (5xx, 429);
2. open the truth record and the output (headers, the chat role chunk);
3. the chunk loop: sleep until each deadline, write, record. A fault that
   hangs, drops the stream or writes garbage acts here, around the write.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from aiohttp import web

from perfgate.sim.encoders import JSONOutput, Output, SSEOutput
from perfgate.sim.faults import NOT_SSE_KINDS, cut, stream_fault
from perfgate.sim.request import BadRequest, parse_request
from perfgate.sim.state import SIM_KEY
from perfgate.sim.timing import base_delays_ms, chunk_sizes, sleep_until


async def completions(request: web.Request) -> web.StreamResponse:
    return await generate(request, "completions")


async def chat(request: web.Request) -> web.StreamResponse:
    return await generate(request, "chat")


async def generate(request: web.Request, api: str) -> web.StreamResponse:
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

    refusal = sim.count_request()  # fault modes that crash on, or refuse, this request
    if refusal is not None:
        return refusal.response()
    if cfg.fault("no-usage"):  # an endpoint that never says what it counted
        req = dataclasses.replace(req, include_usage=False, return_token_ids=False)
    not_sse = cfg.fault("not-sse") if req.stream else None
    if not_sse is not None and NOT_SSE_KINDS[int(not_sse.value)] == "html":  # a proxy's sign-in page, 200
        return web.Response(status=200, content_type="text/html",
                            text="<html><head><title>Sign in</title></head><body>Please sign in</body></html>")
    truth = sim.open(request.headers.get("X-Request-Id"), api, req.stream, arrival, req.prompt_tokens, req.max_tokens)
    generated = min(req.max_tokens, cfg.eos_after) if cfg.eos_after else req.max_tokens
    finish = "stop" if generated < req.max_tokens else "length"
    sizes = chunk_sizes(generated, cfg.tokens_per_chunk)
    delays = base_delays_ms(cfg, req.prompt_tokens, sizes, truth.index)
    name = cfg.model_name
    sim.m_prompt.labels(name).inc(req.prompt_tokens)
    out: Output = (SSEOutput if req.stream and not_sse is None else JSONOutput)(request, req, truth, name)
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
                await sleep_until(loop, deadline)
                if sim.hung is not None and sim.hung.is_set():
                    truth.error = "fault hang-after-tokens: stuck"
                    await loop.create_future()  # never done: the connection stays open, nothing more is written
                ids = list(range(next_id, next_id + k))
                next_id += k
                last = n == len(sizes) - 1
                garble = stream_fault(cfg.faults, n) if req.stream else None
                if garble is not None and garble.kind in ("truncate", "reset"):
                    truth.error = f"fault {garble.kind} after {n} chunks"
                    assert out.resp is not None
                    return await cut(request, out.resp, garble.kind)
                hold = cfg.coalesce > 1 and not last and (n + 1) % cfg.coalesce != 0
                if garble is not None:
                    await out.faulty_chunk(garble, ids, "".join(f" t{i}" for i in ids), last=last)
                else:
                    await out.chunk(ids, "".join(f" t{i}" for i in ids), last=last, hold=hold, finish=finish)
                written = time.perf_counter()
                sim.count_tokens(k)
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
            usage = None if cfg.fault("no-usage") else {
                "prompt_tokens": req.prompt_tokens, "completion_tokens": generated,
                "total_tokens": req.prompt_tokens + generated}
            truncate = cfg.fault("truncate") if req.stream else None
            if truncate is not None and len(sizes) <= truncate.value:  # cut right before usage and [DONE]
                truth.error = f"fault truncate after {len(sizes)} chunks"
                assert out.resp is not None
                return await cut(request, out.resp, "truncate")
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
