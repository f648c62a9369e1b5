"""Metric definitions checked on hand-built timelines with known truth."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sse_events import comp, ev

from perfgate.measure.metrics import (
    client_health,
    distribution,
    per_token_itl,
    request_record,
    summarize,
)
from perfgate.measure.records import ErrorKind, RawRequest
from perfgate.measure.sse import parse_stream


def chat(content=None, role=None, ids=None):
    delta = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    c = {"index": 0, "delta": delta}
    if ids is not None:
        c["token_ids"] = ids
    return {"choices": [c]}


USAGE = lambda p, c: {"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c}}  # noqa: E731
DONE = b"data: [DONE]\n\n"


def raw(chunks, sent=10.0, done=None, status=200, **kw):
    return RawRequest(index=0, scheduled_at=kw.pop("scheduled", None), sent_at=sent, chunks=chunks,
                      done_at=done if done is not None else (chunks[-1][0] if chunks else sent), status=status, **kw)


def rec(chunks, **kw):
    r = raw(chunks, **kw)
    return request_record(r, parse_stream(r.chunks) if r.chunks else None, run_start=0.0)


def test_completions_known_timeline():
    # sent at 10.000; tokens at 10.050, 10.060, 10.075; usage + DONE at 10.080
    r = rec([(10.050, ev(comp("a"))), (10.060, ev(comp("b"))), (10.075, ev(comp("c"))),
             (10.080, ev(USAGE(32, 3)) + DONE)])
    assert r.error is None
    assert r.ttft_ms == pytest.approx(50.0)
    assert r.itl_ms == pytest.approx([10.0, 15.0])
    assert r.e2e_ms == pytest.approx(80.0)
    assert r.tpot_ms == pytest.approx((80.0 - 50.0) / 2)
    assert (r.output_tokens, r.output_tokens_source, r.prompt_tokens) == (3, "usage", 32)


def test_several_tokens_per_chunk_spread_itl_per_token():
    r = rec([(1.1, ev(comp("ab", [1, 2]))), (1.2, ev(comp("cde", [3, 4, 5]))), (1.3, ev(comp("f", [6])) + DONE)], sent=1.0)
    assert r.tokens_per_chunk == [2, 3, 1]
    assert r.output_tokens == 6 and r.output_tokens_source == "token_ids"
    assert r.itl_ms == pytest.approx([100.0, 100.0])
    assert per_token_itl(r) == pytest.approx([100 / 3] * 3 + [100.0])
    assert r.tpot_ms == pytest.approx((300.0 - 100.0) / 5)


def test_empty_text_with_token_ids_is_a_token():
    # vLLM sends "" text with an id when a token ends mid UTF-8 character.
    r = rec([(1.1, ev(comp("a", [1]))), (1.2, ev(comp("", [2]))), (1.3, ev(comp("é", [3]))), (1.4, ev(USAGE(4, 3)) + DONE)], sent=1.0)
    assert r.chunks == 3 and r.output_tokens == 3


def test_empty_chunks_without_ids_are_not_tokens():
    r = rec([(1.1, ev(comp(""))), (1.2, ev(comp("a"))), (1.3, ev(comp(""))), (1.4, ev(comp("b")) + DONE)], sent=1.0)
    assert r.chunks == 2 and r.ttft_ms == pytest.approx(200.0) and r.itl_ms == pytest.approx([200.0])
    assert r.output_tokens_source == "chunks"


def test_role_only_first_chat_chunk_is_not_ttft():
    r = rec([(2.01, ev(chat("", role="assistant"))), (2.05, ev(chat("hi"))), (2.07, ev(chat(" there"))),
             (2.08, ev(USAGE(9, 2)) + DONE)], sent=2.0)
    assert r.ttft_ms == pytest.approx(50.0)
    assert r.chunks == 2 and r.output_tokens == 2


def test_usage_only_final_chunk_is_not_a_token_and_sets_counts():
    r = rec([(1.1, ev(comp("x"))), (1.5, ev(USAGE(7, 1))), (1.6, DONE)], sent=1.0)
    assert r.chunks == 1 and r.itl_ms == [] and r.output_tokens == 1 and r.tpot_ms is None
    assert r.e2e_ms == pytest.approx(600.0)


def test_event_split_across_reads_takes_the_completing_read_time():
    whole = ev(comp("a"))
    r = rec([(1.1, whole[:7]), (1.3, whole[7:]), (1.4, ev(comp("b")) + DONE)], sent=1.0)
    assert r.ttft_ms == pytest.approx(300.0)


def test_crlf_and_keepalive_comments():
    body = b": ping\r\n\r\n" + ev(comp("a")).replace(b"\n", b"\r\n") + b"data: [DONE]\r\n\r\n"
    r = rec([(1.2, body)], sent=1.0)
    assert r.error is None and r.chunks == 1


def test_error_event_mid_stream():
    r = rec([(1.1, ev(comp("a"))), (1.2, ev({"error": {"message": "engine died", "code": 500}}))], sent=1.0)
    assert r.error == "mid_stream" and "engine died" in r.error_detail
    assert r.ttft_ms == pytest.approx(100.0)  # timings kept for the record


def test_stream_cut_without_done():
    r = rec([(1.1, ev(comp("a"))), (1.2, ev(comp("b")))], sent=1.0)
    assert r.error == "mid_stream" and "[DONE]" in r.error_detail


def test_garbage_body_is_a_protocol_error():
    r = rec([(1.1, b"<html>502 bad gateway</html>")], sent=1.0)
    assert r.error == "protocol"


def test_http_errors_keep_their_class():
    r = request_record(RawRequest(0, None, 1.0, [], 1.01, 429, ErrorKind.HTTP_429, "slow down"), None, 0.0)
    assert r.error == "http_429" and r.ttft_ms is None and r.e2e_ms == pytest.approx(10.0)


def test_distribution_on_known_data():
    d = distribution([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert d["mean"] == 5.5 and d["p50"] == 5.5 and d["min"] == 1 and d["max"] == 10
    assert d["p90"] == pytest.approx(9.1) and d["p99"] == pytest.approx(9.91)
    assert d["std"] == pytest.approx(3.0276503540974917)
    assert distribution([4.0])["std"] == 0.0
    assert distribution([])["mean"] is None


def _ok(i, ttft, e2e, out, prompt=10):
    r = rec([(1.0 + ttft / 1000, ev(comp("a"))), (1.0 + e2e / 1000, ev(comp("b")) + ev(USAGE(prompt, out)) + DONE)], sent=1.0)
    return r.model_copy(update={"index": i})


def test_summary_throughput_goodput_errors():
    recs = [_ok(0, 100, 1100, 11), _ok(1, 300, 1300, 11), _ok(2, 100, 2100, 11)]
    bad = request_record(RawRequest(3, None, 1.0, [], 1.1, 500, ErrorKind.HTTP_5XX, "x"), None, 0.0)
    s = summarize([*recs, bad], duration_s=2.0, slo_ttft_ms=200, slo_tpot_ms=150)
    m = s.metrics
    assert (s.completed, s.failed, s.errors) == (3, 1, {"http_5xx": 1})
    assert m["request_throughput"] == 1.5
    assert m["output_throughput"] == 33 / 2.0
    assert m["total_token_throughput"] == (33 + 30) / 2.0
    # tpot: 100, 100, 200 ms -> request 2 misses TPOT SLO, request 1 misses TTFT SLO
    assert m["goodput"] == 0.5
    assert m["error_rate"] == 0.25
    assert m["ttft_ms.p50"] == pytest.approx(100.0)
    assert m["per_user_tps.mean"] == pytest.approx((11 / 1.1 + 11 / 1.3 + 11 / 2.1) / 3)
    assert s.output_tokens_source == "usage"


def test_client_health_flags_schedule_lag_and_loop_stalls():
    recs = [rec([(1.1 + i, ev(comp("a")) + DONE)], sent=1.0 + i + lag / 1000, scheduled=1.0 + i)
            for i, lag in enumerate([0.5] * 98 + [30, 40])]
    h = client_health(recs, 100.0, 1.0, [0.1] * 1000)
    assert h.client_bound and "schedule lag" in h.reason
    quiet = [rec([(1.1 + i, ev(comp("a")) + DONE)], sent=1.0 + i + 0.0005, scheduled=1.0 + i) for i in range(100)]
    assert not client_health(quiet, 100.0, 1.0, [0.2] * 1000).client_bound
    stalled = client_health(quiet, 100.0, 1.0, [0.2] * 900 + [50.0] * 100)
    assert stalled.client_bound and "event-loop stall" in stalled.reason
    # Sends spread over twice the scheduled span: half the scheduled rate.
    slow = [rec([(1.1 + 2 * i, ev(comp("a")) + DONE)], sent=1.0 + 2 * i, scheduled=1.0 + i) for i in range(10)]
    h = client_health(slow, 20.0, 1.0, [0.1] * 100, max_schedule_lag_ms=1e9)
    assert h.client_bound and "achieved 0.50 req/s of 1.00 scheduled" in h.reason


@given(st.lists(st.tuples(st.floats(0.001, 0.5), st.integers(1, 4)), min_size=1, max_size=30))
def test_properties_ttft_le_e2e_and_itl_mass(gaps_and_sizes):
    t, chunks, ids = 5.0, [], 0
    for gap, k in gaps_and_sizes:
        t += gap
        chunks.append((t, ev(comp("x" * k, list(range(ids, ids + k))))))
        ids += k
    chunks.append((t + 0.001, DONE))
    r = rec(chunks, sent=5.0)
    assert r.ttft_ms <= r.e2e_ms
    assert r.output_tokens == ids
    assert sum(per_token_itl(r)) == pytest.approx(sum(r.itl_ms))
    assert len(per_token_itl(r)) == ids - gaps_and_sizes[0][1]
