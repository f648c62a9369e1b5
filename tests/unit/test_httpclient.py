"""The lean HTTP/1.1 client (measure/httpclient.py): framing by property, then real sockets."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from perfgate.measure.httpclient import RawClient, _Conn
from perfgate.measure.loadgen import RequestSpec, run_load_async
from perfgate.measure.records import ErrorKind, RawRequest


class _Transport:
    def __init__(self):
        self.written, self.closed = [], False

    def write(self, b):
        self.written.append(b)

    def close(self):
        self.closed = True

    abort = close

    def is_closing(self):
        return self.closed

    def get_extra_info(self, key):
        return None


class _Waiter:
    def __init__(self):
        self.result = "pending"

    def done(self):
        return self.result != "pending"

    def set_result(self, value):
        self.result = value


def _feed(wire: bytes, cuts: list[int]):
    """Feed ``wire`` to a fresh connection as reads split at ``cuts``; returns (record, waiter, conn, reads)."""
    conn = _Conn()
    conn.connection_made(_Transport())
    rec, waiter = RawRequest(index=0, scheduled_at=None, sent_at=0.0), _Waiter()
    conn.start(rec, b"POST / HTTP/1.1\r\n\r\n", waiter)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(wire))), len(wire)]
    reads = [wire[a:b] for a, b in zip(bounds, bounds[1:])]
    for i, r in enumerate(reads):
        conn.data_received(r)
        if waiter.done():
            assert i == len(reads) - 1, "completed before the last byte"
    return rec, waiter, conn, reads


def _chunked(parts: list[bytes], ext: bool, trailer: bool) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(p), b";x=1" if ext else b"", p) for p in parts if p)
    return head + body + b"0\r\n" + (b"X-Trailer: 1\r\n" if trailer else b"") + b"\r\n"


@settings(max_examples=300)
@given(parts=st.lists(st.binary(min_size=0, max_size=40), max_size=8), ext=st.booleans(), trailer=st.booleans(),
       cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=12))
def test_chunked_body_is_recovered_at_any_read_split(parts, ext, trailer, cuts):
    wire = _chunked(parts, ext, trailer)
    rec, waiter, conn, reads = _feed(wire, cuts)
    assert waiter.done() and rec.error is None and rec.status == 200
    assert b"".join(b for _, b in rec.chunks) == b"".join(parts)
    assert all(b for _, b in rec.chunks)  # a read of framing only records nothing, as aiohttp's iter_any
    assert len(rec.chunks) <= len(reads)
    assert [t for t, _ in rec.chunks] == sorted(t for t, _ in rec.chunks)
    assert conn.keep_alive and not conn.closed  # reusable


@given(cuts=st.lists(st.integers(min_value=0, max_value=120), max_size=6))
def test_content_length_error_body_and_status_class(cuts):
    body = json.dumps({"error": "slow down"}).encode()
    wire = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    rec, waiter, _, _ = _feed(wire, cuts)
    assert waiter.done() and rec.error is ErrorKind.HTTP_429 and "slow down" in rec.error_detail
    assert rec.chunks == []  # error bodies are not stream reads


def test_garbage_chunk_size_mid_stream_is_mid_stream_and_bad_status_line_is_protocol():
    rec, waiter, _, _ = _feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n", [])
    assert waiter.done() and rec.error is ErrorKind.MID_STREAM and rec.chunks[0][1] == b"abc"
    rec, waiter, _, _ = _feed(b"<html>nope</html>\r\n\r\n", [])
    assert waiter.done() and rec.error is ErrorKind.PROTOCOL and rec.status is None


def test_connection_closed_before_status_mid_stream_and_body_until_close():
    conn = _Conn()
    conn.connection_made(_Transport())
    rec, waiter = RawRequest(index=0, scheduled_at=None, sent_at=0.0), _Waiter()
    conn.start(rec, b"", waiter)
    conn.connection_lost(None)
    assert rec.error is ErrorKind.CONNECT and waiter.done()
    rec, waiter, conn, _ = _feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", [])
    conn.connection_lost(ConnectionResetError("reset"))
    assert rec.error is ErrorKind.MID_STREAM and waiter.done()
    rec, waiter, conn, _ = _feed(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\n", [10])
    assert not waiter.done()
    conn.connection_lost(None)  # HTTP/1.0 without a length: the body ends with the connection
    assert waiter.done() and rec.error is None and b"".join(b for _, b in rec.chunks) == b"data: x\n\n"
    assert not conn.keep_alive


def test_interim_100_continue_is_skipped():
    wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    rec, waiter, _, _ = _feed(wire, [5, 30])
    assert waiter.done() and rec.status == 200 and b"".join(b for _, b in rec.chunks) == b"ok"


# --- real sockets --------------------------------------------------------------------------------


async def _serve(handler, path="/v1/completions"):
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


def _specs(n, max_tokens=3):
    return [RequestSpec.build(i, "/v1/completions", {"prompt": "x", "max_tokens": max_tokens}) for i in range(n)]


def test_raw_and_aiohttp_paths_record_the_same_bytes_and_the_raw_one_reuses_connections():
    peers = set()

    async def handler(request):
        peers.add(request.transport.get_extra_info("peername"))
        body = await request.json()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for i in range(body["max_tokens"]):
            await asyncio.sleep(0.003)
            await resp.write(f"data: {json.dumps({'choices': [{'text': str(i)}]})}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def main():
        runner, url = await _serve(handler)
        try:
            raw = await run_load_async(url, _specs(12), concurrency=3, warmup_specs=_specs(3), http_client="raw")
            n_raw = len(peers)
            aio = await run_load_async(url, _specs(12), concurrency=3, http_client="aiohttp")
            return raw, n_raw, aio
        finally:
            await runner.cleanup()

    raw, n_raw, aio = asyncio.run(main())
    assert n_raw == 3  # 3 connections opened for warm-up and reused for all 12 measured requests
    assert raw.client["http_client"] == "raw" and raw.client["prewarmed_connections"] == 3
    for a, b in zip(raw.requests, aio.requests):
        assert a.error is None and b.error is None and a.status == b.status == 200
        assert b"".join(c for _, c in a.chunks) == b"".join(c for _, c in b.chunks)
        assert a.sent_at <= a.chunks[0][0] <= a.done_at


def test_prewarm_opens_connections_before_the_window_for_the_open_loop():
    used = set()

    async def handler(request):
        used.add(request.transport.get_extra_info("peername"))
        await asyncio.sleep(0.05)
        return web.Response(text="data: [DONE]\n\n", content_type="text/event-stream")

    async def main():
        runner, url = await _serve(handler)
        opened = set()

        def window_starts():
            opened.update(h.transport.get_extra_info("peername") for h in runner.server.connections)

        try:
            run = await run_load_async(url, _specs(8), request_rate=200.0, max_concurrency=4, seed=1,
                                       on_measure_start=window_starts)
            return run, opened
        finally:
            await runner.cleanup()

    run, opened = asyncio.run(main())
    assert all(r.error is None for r in run.requests)
    assert run.client["prewarmed_connections"] == 4 and len(opened) == 4
    assert used <= opened  # every measured request went over a connection opened before the window


def _stalls(seen: dict | None = None):
    """A handler that sends the stream's headers, then nothing for 5 s (recording the Authorization header)."""
    async def stall(request):
        if seen is not None:
            seen["auth"] = request.headers.get("Authorization")
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await asyncio.sleep(5)
        return resp
    return stall


def test_timeout_and_refused_connection_classes_on_the_raw_path():
    async def main():
        runner, url = await _serve(_stalls())
        try:
            return await run_load_async(url, _specs(1), concurrency=1, timeout_s=0.3)
        finally:
            await runner.cleanup()

    run = asyncio.run(main())
    assert run.requests[0].error is ErrorKind.TIMEOUT and run.requests[0].status == 200
    refused = asyncio.run(run_load_async("http://127.0.0.1:9", _specs(1), concurrency=1, timeout_s=5))
    assert refused.requests[0].error is ErrorKind.CONNECT and "127.0.0.1:9" in refused.requests[0].error_detail


def test_trial_deadline_cuts_a_request_in_flight_and_headers_go_on_the_wire():
    seen = {}

    async def main():
        runner, url = await _serve(_stalls(seen))
        client = RawClient(url, headers={"Authorization": "Bearer k"})
        rec = RawRequest(index=0, scheduled_at=None, sent_at=0.0)
        try:
            await client.send(_specs(1)[0], rec, 60.0, deadline=asyncio.get_running_loop().time() + 0.3)
            return rec
        finally:
            await client.close()
            await runner.cleanup()

    rec = asyncio.run(main())
    assert rec.error is ErrorKind.TIMEOUT and "trial deadline" in rec.error_detail
    assert 0.25 < rec.done_at - rec.sent_at < 2.0 and seen["auth"] == "Bearer k"


def test_request_bytes_carry_the_id_and_a_base_path():
    c = RawClient("http://127.0.0.1:8000/prefix/", headers={"Authorization": "Bearer k"})
    raw = c.request_bytes(7, "/v1/completions", b'{"a":1}')
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /prefix/v1/completions HTTP/1.1\r\n") and body == b'{"a":1}'
    assert b"X-Request-Id: perfgate-7" in head and b"Content-Length: 7" in head and b"Authorization: Bearer k" in head
