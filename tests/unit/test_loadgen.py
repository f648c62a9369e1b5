"""Load generation: the open-loop schedule and closed-loop concurrency, against a real local HTTP server."""

import asyncio
import json

import numpy as np
import pytest
from aiohttp import web

from perfgate.measure.loadgen import RequestSpec, arrival_offsets, run_load_async
from perfgate.measure.records import ErrorKind


def test_poisson_schedule_has_the_requested_mean_rate():
    off = arrival_offsets(20000, rate=50.0, burstiness=1.0, seed=1)
    gaps = np.diff(off)
    assert off[0] == 0.0 and np.all(gaps >= 0)
    assert abs(gaps.mean() - 1 / 50) / (1 / 50) < 0.03
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05  # exponential: CV = 1


def test_burstiness_changes_variance_not_rate():
    bursty = np.diff(arrival_offsets(20000, 50.0, 0.25, seed=2))
    regular = np.diff(arrival_offsets(20000, 50.0, 4.0, seed=2))
    assert abs(bursty.mean() - 0.02) < 0.001 and abs(regular.mean() - 0.02) < 0.001
    assert bursty.std() / bursty.mean() == pytest.approx(2.0, rel=0.1)  # CV = 1/sqrt(shape)
    assert regular.std() / regular.mean() == pytest.approx(0.5, rel=0.1)


def test_schedule_is_seeded():
    assert np.array_equal(arrival_offsets(10, 5.0, 1.0, 7), arrival_offsets(10, 5.0, 1.0, 7))


async def _serve(handler):
    app = web.Application()
    app.router.add_post("/v1/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


def _specs(n):
    return [RequestSpec.build(i, "/v1/completions", {"prompt": "x", "max_tokens": 2}) for i in range(n)]


def test_closed_loop_never_exceeds_concurrency_and_records_raw_reads():
    inflight = {"now": 0, "max": 0}

    async def handler(request):
        inflight["now"] += 1
        inflight["max"] = max(inflight["max"], inflight["now"])
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for tok in ("a", "b"):
            await asyncio.sleep(0.01)
            await resp.write(f"data: {json.dumps({'choices': [{'text': tok}]})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        inflight["now"] -= 1
        return resp

    async def main():
        runner, url = await _serve(handler)
        try:
            return await run_load_async(url, _specs(12), concurrency=3, warmup_specs=_specs(2))
        finally:
            await runner.cleanup()

    run = asyncio.run(main())
    assert inflight["max"] == 3
    assert len(run.requests) == 12 and len(run.warmup) == 2 and all(w.warmup for w in run.warmup)
    for r in run.requests:
        assert r.status == 200 and r.error is None
        assert b"".join(c for _, c in r.chunks).endswith(b"data: [DONE]\n\n")
        assert r.sent_at <= r.chunks[0][0] <= r.done_at
    assert all(r.sent_at >= run.start for r in run.requests)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_open_loop_sends_on_schedule_and_classifies_http_errors(loop):
    async def handler(request):
        body = await request.json()
        if body["max_tokens"] == 429:
            return web.json_response({"error": "slow down"}, status=429)
        if body["max_tokens"] == 500:
            return web.json_response({"error": "boom"}, status=500)
        return web.Response(text="data: [DONE]\n\n", content_type="text/event-stream")

    # 64 sends at 200/s: enough that a send woken early (uvloop's timers) would show in one run
    specs = [RequestSpec.build(i, "/v1/completions", {"max_tokens": m})
             for i, m in enumerate([1, 429, 500, 1] + [1] * 60)]

    async def main():
        runner, url = await _serve(handler)
        try:
            return await run_load_async(url, specs, request_rate=200.0, seed=3)
        finally:
            await runner.cleanup()

    factory = asyncio.new_event_loop if loop == "asyncio" else pytest.importorskip("uvloop").new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        run = runner.run(main())
    kinds = [r.error for r in run.requests]
    assert kinds == [None, ErrorKind.HTTP_429, ErrorKind.HTTP_5XX] + [None] * 61
    assert "slow down" in run.requests[1].error_detail
    # The schedule is the seeded draw from the run's start, exactly.
    assert [r.scheduled_at - run.start for r in run.requests] == pytest.approx(
        list(arrival_offsets(65, 200.0, 1.0, seed=3)[:64]), abs=1e-9)
    lags_ms = [(r.sent_at - r.scheduled_at) * 1000 for r in run.requests]
    # Never early: uvloop's timers have 1 ms steps and wake up to 1 ms before the due time on their own.
    assert min(lags_ms) >= 0, lags_ms
    # On time: late only by what the event loop was kept from running (the 5 ms probe under-reports a stall by at
    # most its interval), plus the send itself.
    assert max(lags_ms) <= max(run.loop_lag_ms, default=0.0) + 5.0 + 2.0, (lags_ms, max(run.loop_lag_ms))


def test_connection_refused_is_a_connect_error():
    run = asyncio.run(run_load_async("http://127.0.0.1:9", _specs(1), concurrency=1, timeout_s=5))
    assert run.requests[0].error is ErrorKind.CONNECT
