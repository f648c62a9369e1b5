"""Metric definitions on hand-built timelines with known truth.

Times are chosen to be exact in binary floating point (multiples of 1/64 s)
where a test asserts an exact figure or an SLO boundary.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sse_events import comp, ev

from perfgate.measure.metrics import (
    client_health,
    distribution,
    meets_slo,
    per_token_itl,
    per_user_tps,
    request_record,
    summarize,
)
from perfgate.measure.records import ErrorKind, RawRequest
from perfgate.measure.sse import parse_stream
from perfgate.schema.result import RequestRecord


def chat(content, role=None):
    return {"choices": [{"index": 0, "delta": {**({"role": role} if role else {}), "content": content}}]}


def usage(p, c):
    return {"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c}}


DONE = b"data: [DONE]\n\n"
ERR = ev({"error": {"message": "engine died", "code": 500}})


def rec(chunks, sent=0.0, done=None, status=200, scheduled=None, index=0, run_start=0.0, count_tokens=None,
        error=None, detail=""):
    raw = RawRequest(index=index, scheduled_at=scheduled, sent_at=sent, chunks=chunks,
                     done_at=done if done is not None else (chunks[-1][0] if chunks else sent),
                     status=status, error=error, error_detail=detail)
    return request_record(raw, parse_stream(raw.chunks) if raw.chunks else None, run_start, count_tokens)


# --------------------------------------------------------------------------- per request

def test_completions_timeline_with_usage():
    r = rec([(0.125, ev(comp("a"))), (0.1875, ev(comp("b"))), (0.25, ev(comp("c"))), (0.3125, ev(comp("d"))),
             (0.34375, ev(usage(10, 4))), (0.375, DONE)])
    assert r.error is None and r.error_detail == ""
    assert r.ttft_ms == 125.0
    assert r.itl_ms == [62.5, 62.5, 62.5]
    assert r.e2e_ms == 375.0
    assert r.tpot_ms == pytest.approx(250.0 / 3)
    assert (r.output_tokens, r.output_tokens_source, r.prompt_tokens, r.chunks) == (4, "usage", 10, 4)
    assert r.tokens_per_chunk == []  # no token_ids: unknown


def test_several_tokens_per_chunk_from_token_ids():
    r = rec([(1.25, ev(comp("ab", [1, 2]))), (1.375, ev(comp("cde", [3, 4, 5]))), (1.4375, ev(comp("f", [6]))),
             (1.5, DONE)], sent=1.0)
    assert r.tokens_per_chunk == [2, 3, 1]
    assert (r.output_tokens, r.output_tokens_source) == (6, "token_ids")
    assert r.itl_ms == [125.0, 62.5]
    assert per_token_itl(r) == [125.0 / 3] * 3 + [62.5]
    assert r.tpot_ms == (500.0 - 250.0) / 5


def test_usage_beats_token_ids():
    r = rec([(1.25, ev(comp("ab", [1, 2]))), (1.375, ev(comp("c", [3]))), (1.4, ev(usage(7, 3)) + DONE)], sent=1.0)
    assert (r.output_tokens, r.output_tokens_source) == (3, "usage")
    assert r.tokens_per_chunk == [2, 1]


def test_tokenizer_then_chunks_fallback():
    chunks = [(0.25, ev(comp("hello"))), (0.5, ev(comp(" world"))), (0.75, DONE)]
    seen = []

    def count(text):
        seen.append(text)
        return 3

    r = rec(chunks, count_tokens=count)
    assert seen == ["hello world"]
    assert (r.output_tokens, r.output_tokens_source) == (3, "tokenizer")
    assert r.tpot_ms == (750.0 - 250.0) / 2
    r = rec(chunks)
    assert (r.output_tokens, r.output_tokens_source) == (2, "chunks")
    assert r.tpot_ms == 500.0


def test_empty_chunks_do_not_move_ttft_or_itl():
    r = rec([(0.125, ev(comp(""))), (0.25, ev(comp("a"))), (0.375, ev(comp(""))), (0.5, ev(comp("b"))),
             (0.625, DONE)])
    assert r.ttft_ms == 250.0 and r.itl_ms == [250.0] and r.chunks == 2


def test_role_only_first_chat_chunk_is_not_the_first_token():
    r = rec([(2.0625, ev(chat("", role="assistant"))), (2.125, ev(chat("Hi"))), (2.25, ev(chat(" there"))),
             (2.3125, ev(usage(9, 2))), (2.375, DONE)], sent=2.0)
    assert r.ttft_ms == 125.0 and r.itl_ms == [125.0]
    assert (r.chunks, r.output_tokens, r.prompt_tokens) == (2, 2, 9)
    assert r.tpot_ms == 375.0 - 125.0


def test_usage_only_final_chunk_is_not_a_token():
    r = rec([(0.25, ev(comp("x"))), (0.75, ev(usage(7, 1))), (1.0, DONE)])
    assert r.chunks == 1 and r.itl_ms == [] and r.output_tokens == 1
    assert r.tpot_ms is None  # one token: no time *per output token* after the first
    assert r.e2e_ms == 1000.0


def test_event_split_across_reads_times_the_completing_read():
    whole = ev(comp("a"))
    r = rec([(0.125, whole[:9]), (0.375, whole[9:]), (0.5, ev(comp("b")) + DONE)])
    assert r.ttft_ms == 375.0 and r.itl_ms == [125.0]


def test_events_in_one_read_have_zero_gap():
    r = rec([(0.25, ev(comp("a")) + ev(comp("b"))), (0.5, ev(comp("c")) + DONE)])
    assert r.itl_ms == [0.0, 250.0]


def test_times_relative_to_run_start_and_schedule_lag():
    r = rec([(100.5, ev(comp("a")) + DONE)], sent=100.25, scheduled=100.125, run_start=100.0, index=7)
    assert (r.index, r.scheduled_at_s, r.sent_at_s) == (7, 0.125, 0.25)
    assert r.schedule_lag_ms == 125.0 and r.ttft_ms == 250.0
    closed = rec([(100.5, ev(comp("a")) + DONE)], sent=100.25, run_start=100.0)
    assert closed.scheduled_at_s is None and closed.schedule_lag_ms is None


# --------------------------------------------------------------------------- failures

def test_error_event_after_tokens_is_mid_stream_and_keeps_timings():
    r = rec([(0.125, ev(comp("a"))), (0.25, ev(comp("b"))), (0.375, ERR)], done=0.5)
    assert r.error == "mid_stream" and r.error_detail == "error event: engine died"
    assert (r.ttft_ms, r.itl_ms, r.e2e_ms) == (125.0, [125.0], 500.0)


def test_error_event_before_any_token_is_mid_stream():
    r = rec([(0.125, ev(chat("", role="assistant"))), (0.25, ERR), (0.375, DONE)])
    assert r.error == "mid_stream" and r.ttft_ms is None


def test_stream_cut_without_done_after_tokens_is_mid_stream():
    r = rec([(0.125, ev(comp("a"))), (0.25, ev(comp("b")))])
    assert r.error == "mid_stream" and r.error_detail == "stream ended without data: [DONE]"
    assert r.ttft_ms == 125.0


def test_stream_cut_inside_an_event_after_tokens_is_mid_stream():
    r = rec([(0.125, ev(comp("a"))), (0.25, ev(comp("b"))[:-2])])
    assert r.error == "mid_stream" and r.error_detail.startswith("incomplete SSE event")


def test_client_reported_mid_stream_failure_wins():
    r = rec([(0.125, ev(comp("a")))], done=0.25, error=ErrorKind.MID_STREAM, detail="ClientPayloadError: reset")
    assert (r.error, r.error_detail, r.ttft_ms, r.e2e_ms) == ("mid_stream", "ClientPayloadError: reset", 125.0, 250.0)


def test_garbage_body_is_protocol():
    r = rec([(0.125, b"<html><body>502 Bad Gateway</body></html>")])
    assert r.error == "protocol" and r.ttft_ms is None and r.output_tokens is None
    r = rec([(0.125, b"data: {not json\n\n")])
    assert r.error == "protocol" and r.error_detail.startswith("undecodable SSE data")


def test_200_without_tokens_is_protocol():
    assert rec([(0.125, ev(usage(5, 0)) + DONE)]).error_detail == "stream finished without generating any token"
    assert rec([(0.125, ev(comp("")))]).error == "protocol"  # no token, no [DONE]
    empty = request_record(RawRequest(0, None, 0.0, [], 0.125, 200), None, 0.0)
    assert (empty.error, empty.error_detail) == ("protocol", "empty response body")


@pytest.mark.parametrize("status, kind", [(429, "http_429"), (400, "http_4xx"), (404, "http_4xx"),
                                          (500, "http_5xx"), (503, "http_503"), (None, "connect"),
                                          (204, "protocol")])
def test_status_classes_when_the_client_did_not_classify(status, kind):
    r = request_record(RawRequest(0, None, 1.0, [], 1.0625, status), None, 0.0)
    assert r.error == kind and r.e2e_ms == 62.5 and r.ttft_ms is None


def test_client_classified_http_errors_keep_class_and_detail():
    raw = RawRequest(0, None, 1.0, [], 1.015625, 429, ErrorKind.HTTP_429, "rate limited")
    r = request_record(raw, None, 0.0)
    assert (r.error, r.error_detail, r.e2e_ms, r.output_tokens) == ("http_429", "rate limited", 15.625, None)
    timeout = request_record(RawRequest(1, None, 1.0, [], None, None, ErrorKind.TIMEOUT, "t"), None, 0.0)
    assert timeout.error == "timeout" and timeout.e2e_ms is None


# --------------------------------------------------------------------------- per-token ITL

def test_per_token_itl_falls_back_to_chunk_gaps():
    r = RequestRecord(index=0, sent_at_s=0.0, itl_ms=[10.0, 20.0], tokens_per_chunk=[])
    assert per_token_itl(r) == [10.0, 20.0]
    mismatched = RequestRecord(index=0, sent_at_s=0.0, itl_ms=[10.0, 20.0], tokens_per_chunk=[1, 2])
    assert per_token_itl(mismatched) == [10.0, 20.0]
    ones = RequestRecord(index=0, sent_at_s=0.0, itl_ms=[10.0, 20.0], tokens_per_chunk=[1, 1, 1])
    assert per_token_itl(ones) == [10.0, 20.0]
    four = RequestRecord(index=0, sent_at_s=0.0, itl_ms=[40.0], tokens_per_chunk=[3, 4])
    assert per_token_itl(four) == [10.0, 10.0, 10.0, 10.0]


# --------------------------------------------------------------------------- distribution

def test_distribution_on_known_data():
    d = distribution([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert (d["mean"], d["p50"], d["min"], d["max"]) == (5.5, 5.5, 1.0, 10.0)
    assert d["p90"] == pytest.approx(9.1) and d["p95"] == pytest.approx(9.55) and d["p99"] == pytest.approx(9.91)
    assert d["std"] == pytest.approx(math.sqrt(55 / 6))  # sample std, ddof=1
    d = distribution([40, 10, 30, 20])  # order does not matter
    assert (d["mean"], d["p50"], d["p90"], d["p95"], d["p99"]) == (25.0, 25.0, 37.0, 38.5, pytest.approx(39.7))
    assert d["std"] == pytest.approx(math.sqrt(500 / 3))


def test_distribution_edge_cases():
    assert distribution([4.0]) == {"mean": 4.0, "std": 0.0, "p50": 4.0, "p90": 4.0, "p95": 4.0, "p99": 4.0,
                                   "min": 4.0, "max": 4.0}
    assert distribution([]) == dict.fromkeys(("mean", "std", "p50", "p90", "p95", "p99", "min", "max"))


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_distribution_is_ordered(values):
    d = distribution(values)
    tol = 1e-9 * max(1.0, max(abs(v) for v in values))
    assert d["min"] - tol <= d["p50"] <= d["p90"] + tol <= d["p95"] + 2 * tol <= d["p99"] + 3 * tol <= d["max"] + 4 * tol
    assert d["min"] - tol <= d["mean"] <= d["max"] + tol and d["std"] >= 0.0


# --------------------------------------------------------------------------- summary

def _trial():
    a = rec([(0.125, ev(comp("a"))), (0.1875, ev(comp("b"))), (0.25, ev(comp("c"))), (0.3125, ev(comp("d"))),
             (0.34375, ev(usage(10, 4))), (0.375, DONE)], index=0)
    b = rec([(1.25, ev(comp("ab", [1, 2]))), (1.375, ev(comp("cde", [3, 4, 5]))), (1.4375, ev(usage(6, 5))),
             (1.5, DONE)], sent=1.0, index=1)
    c = request_record(RawRequest(2, None, 0.75, [], 0.765625, 503), None, 0.0)
    d = rec([(0.5625, ev(comp("x"))), (0.625, ERR)], sent=0.5, index=3)  # fast, but failed
    return a, b, c, d


def test_summary_on_a_known_trial():
    a, b, c, d = _trial()
    assert (a.ttft_ms, a.tpot_ms, b.ttft_ms, b.tpot_ms) == (125.0, pytest.approx(250 / 3), 250.0, 62.5)
    s = summarize([a, b, c, d], duration_s=2.0)
    m = s.metrics
    assert (s.completed, s.failed, s.duration_s) == (2, 2, 2.0)
    assert s.errors == {"http_503": 1, "mid_stream": 1}  # a 503 is throttling, its own kind
    assert s.output_tokens_source == "usage"
    # Latency: successful requests only (d's 62.5 ms TTFT is not in here).
    assert (m["ttft_ms.mean"], m["ttft_ms.p50"], m["ttft_ms.min"], m["ttft_ms.max"]) == (187.5, 187.5, 125.0, 250.0)
    assert m["ttft_ms.p90"] == 237.5 and m["ttft_ms.std"] == pytest.approx(125 / math.sqrt(2))
    assert (m["itl_ms.mean"], m["itl_ms.p50"], m["itl_ms.max"]) == (78.125, 62.5, 125.0)
    assert m["itl_per_token_ms.mean"] == pytest.approx((3 * 62.5 + 125.0) / 6)
    assert m["itl_per_token_ms.min"] == pytest.approx(125.0 / 3)
    assert m["tpot_ms.mean"] == pytest.approx((250 / 3 + 62.5) / 2)
    assert (m["e2e_ms.mean"], m["e2e_ms.max"]) == (437.5, 500.0)
    assert m["per_user_tps.mean"] == pytest.approx((4 / 0.375 + 5 / 0.5) / 2)
    assert m["request_throughput"] == 1.0
    assert m["output_throughput"] == (4 + 5) / 2.0
    assert m["total_token_throughput"] == (4 + 5 + 10 + 6) / 2.0
    assert m["goodput"] == 1.0  # no SLO: equals request_throughput
    assert m["error_rate"] == 0.5
    assert (m["throttled_rate"], m["success_rate"], m["throttled_retries"]) == (0.25, 0.5, 0.0)
    keys = {f"{n}.{s}" for n in ("ttft_ms", "itl_ms", "itl_per_token_ms", "tpot_ms", "e2e_ms", "per_user_tps")
            for s in ("mean", "std", "p50", "p90", "p95", "p99", "min", "max")}
    assert m["ttft_ms.gmean"] == pytest.approx(math.sqrt(125.0 * 250.0))  # the live A/B's TTFT statistic
    assert set(m) == keys | {"request_throughput", "output_throughput", "total_token_throughput", "goodput",
                             "error_rate", "ttft_ms.gmean", "throttled_rate", "success_rate", "throttled_retries"}


@pytest.mark.parametrize("slo_ttft, slo_tpot, goodput", [
    (None, None, 1.0),
    (200.0, None, 0.5),   # b's TTFT 250 misses
    (250.0, None, 1.0),   # a boundary value meets the SLO (<=)
    (None, 62.5, 0.5),    # a's TPOT 83.3 misses, b's 62.5 meets
    (None, 84.0, 1.0),
    (200.0, 62.5, 0.0),   # each misses one
    (10.0, None, 0.0),    # the failed request d (TTFT 62.5) never counts
])
def test_goodput_with_slos(slo_ttft, slo_tpot, goodput):
    s = summarize(list(_trial()), duration_s=2.0, slo_ttft_ms=slo_ttft, slo_tpot_ms=slo_tpot)
    assert s.metrics["goodput"] == goodput
    assert s.metrics["request_throughput"] == 1.0


def test_single_token_request_meets_a_tpot_slo():
    one = rec([(0.25, ev(comp("x"))), (0.5, ev(usage(3, 1)) + DONE)])
    assert one.tpot_ms is None
    assert meets_slo(one, slo_tpot_ms=1.0) and not meets_slo(one, slo_ttft_ms=100.0)
    assert summarize([one], 1.0, slo_tpot_ms=1.0).metrics["goodput"] == 1.0


def test_weakest_token_source_is_reported():
    a, b, _, _ = _trial()
    by_chunks = rec([(0.25, ev(comp("x"))), (0.5, ev(comp("y"))), (0.75, DONE)], index=9)
    s = summarize([a, b, by_chunks], 1.0)
    assert s.output_tokens_source == "chunks"
    # Its prompt tokens are unknown (no usage): the total is not silently undercounted.
    assert s.metrics["total_token_throughput"] is None
    assert s.metrics["output_throughput"] == 4 + 5 + 2


def test_summary_of_nothing_and_of_only_failures():
    s = summarize([], duration_s=1.0)
    assert (s.completed, s.failed, s.metrics["error_rate"], s.metrics["request_throughput"]) == (0, 0, None, 0.0)
    assert s.metrics["ttft_ms.p50"] is None and s.output_tokens_source is None
    _, _, c, d = _trial()
    s = summarize([c, d], duration_s=1.0)
    assert (s.metrics["error_rate"], s.metrics["goodput"], s.metrics["e2e_ms.mean"]) == (1.0, 0.0, None)
    assert summarize([c, d], duration_s=0.0).metrics["request_throughput"] is None


def test_per_user_tps_definition():
    r = RequestRecord(index=0, sent_at_s=0.0, e2e_ms=250.0, output_tokens=10)
    assert per_user_tps(r) == 40.0
    assert per_user_tps(r.model_copy(update={"output_tokens": None})) is None
    assert per_user_tps(r.model_copy(update={"e2e_ms": 0.0})) is None


# --------------------------------------------------------------------------- client health

def _sends(lags_ms, period=0.125, scheduled=True, start=0.0):
    return [RequestRecord(index=i, scheduled_at_s=(start + i * period) if scheduled else None,
                          sent_at_s=start + i * period + lag / 1000,
                          schedule_lag_ms=lag if scheduled else None)
            for i, lag in enumerate(lags_ms)]


def test_healthy_open_loop_client():
    h = client_health(_sends([1.0] * 9), 1.0, 8.0, [0.5] * 100)
    assert not h.client_bound and h.reason is None
    assert (h.schedule_lag_ms_p50, h.schedule_lag_ms_p99, h.schedule_lag_ms_max) == (1.0, 1.0, 1.0)
    assert h.achieved_rate == pytest.approx(8.0)  # 9 sends, 8 intervals over 1 s
    assert (h.requested_rate, h.loop_lag_ms_p99, h.loop_lag_ms_max) == (8.0, 0.5, 0.5)


def test_schedule_lag_makes_the_client_bound():
    h = client_health(_sends([1.0] * 9 + [30.0, 30.0]), 1.0, 8.0, [0.5])
    assert h.client_bound and h.reason == "p99 schedule lag 30.0 ms > 10 ms"
    assert h.schedule_lag_ms_max == 30.0
    assert not client_health(_sends([1.0] * 9 + [30.0, 30.0]), 1.0, 8.0, [0.5], max_schedule_lag_ms=50).client_bound


def test_loop_stall_as_samples_or_as_one_figure():
    h = client_health(_sends([1.0] * 9), 1.0, 8.0, [0.5] * 90 + [25.0] * 10)
    assert h.client_bound and h.reason == "p99 event-loop stall 25.0 ms > 10 ms"
    h = client_health(_sends([1.0] * 9), 1.0, 8.0, 25.0)
    assert h.client_bound and h.loop_lag_ms_max == 25.0 and "event-loop stall 25.0 ms" in h.reason
    one_stall = client_health(_sends([1.0] * 9), 1.0, 8.0, [0.5] * 999 + [40.0])  # one stall: p99 is fine
    assert not one_stall.client_bound and one_stall.loop_lag_ms_max == 40.0


def test_achieved_rate_against_the_drawn_schedule():
    # Scheduled every 0.125 s (8/s) but sent every 0.25 s: half the schedule's rate.
    slow = [RequestRecord(index=i, scheduled_at_s=i * 0.125, sent_at_s=i * 0.25) for i in range(9)]
    h = client_health(slow, 2.0, 8.0, None, max_schedule_lag_ms=1e9)
    assert h.client_bound and h.reason == "achieved 4.00 req/s of 8.00 scheduled"
    # The nominal rate (10/s) differs from the drawn schedule (8/s) by chance: kept up with the schedule is fine.
    assert not client_health(_sends([1.0] * 9), 1.0, 10.0, None).client_bound


def test_closed_loop_falls_back_to_the_requested_rate():
    h = client_health(_sends([0.0] * 5, period=0.25, scheduled=False), 1.0, 8.0, None)
    assert h.client_bound and h.reason == "achieved 4.00 req/s of 8.00 requested"
    assert h.schedule_lag_ms_p99 is None
    assert not client_health(_sends([0.0] * 5, period=0.25, scheduled=False), 1.0, None, None).client_bound


def test_several_reasons_are_joined():
    slow = [RequestRecord(index=i, scheduled_at_s=i * 0.125, sent_at_s=i * 0.25, schedule_lag_ms=i * 125.0)
            for i in range(9)]
    h = client_health(slow, 2.0, 8.0, [20.0])
    assert h.reason.split("; ") == ["p99 schedule lag 990.0 ms > 10 ms", "p99 event-loop stall 20.0 ms > 10 ms",
                                     "achieved 4.00 req/s of 8.00 scheduled"]


# --------------------------------------------------------------------------- properties

@given(st.floats(0.001, 2.0), st.lists(st.tuples(st.floats(0.0, 0.5), st.integers(1, 4)), min_size=1, max_size=30),
       st.floats(0.0, 0.1))
def test_timeline_properties(first_delay, gaps_and_sizes, tail):
    sent = 5.0
    t, chunks, n_ids = sent + first_delay, [], 0
    for i, (gap, k) in enumerate(gaps_and_sizes):
        t += gap if i else 0.0
        chunks.append((t, ev(comp("x" * k, list(range(n_ids, n_ids + k))))))
        n_ids += k
    chunks.append((t + tail, DONE))
    r = rec(chunks, sent=sent)
    assert r.error is None
    assert 0.0 < r.ttft_ms <= r.e2e_ms
    assert r.output_tokens == n_ids and r.tokens_per_chunk == [k for _, k in gaps_and_sizes]
    pt = per_token_itl(r)
    assert len(pt) == n_ids - gaps_and_sizes[0][1]
    assert sum(pt) == pytest.approx(sum(r.itl_ms), abs=1e-9)
    assert sum(r.itl_ms) == pytest.approx((t - sent - first_delay) * 1000, abs=1e-6)
    if n_ids > 1:  # TPOT spreads everything after the first token evenly
        assert r.ttft_ms + r.tpot_ms * (n_ids - 1) == pytest.approx(r.e2e_ms)
    else:
        assert r.tpot_ms is None
