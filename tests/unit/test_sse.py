"""SSE parsing on hand-built byte streams: event boundaries, timestamps, token events, errors."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from perfgate.measure.sse import parse_stream


def ev(obj, sep: bytes = b"\n\n") -> bytes:
    return b"data: " + json.dumps(obj).encode() + sep


def comp(text, ids=None, usage=None):
    c = {"index": 0, "text": text, "finish_reason": None}
    if ids is not None:
        c["token_ids"] = ids
    out = {"object": "text_completion", "choices": [c]}
    if usage is not None:
        out["usage"] = usage
    return out


def chat(content=None, role=None, **delta_extra):
    delta = {"role": role} if role else {}
    delta["content"] = content  # None or "" on the role-only first chunk
    delta.update(delta_extra)
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]}


def usage_only(p, c):
    return {"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}


DONE = b"data: [DONE]\n\n"


def test_one_event_per_read():
    p = parse_stream([(1.0, ev(comp("a"))), (2.0, ev(comp("b"))), (3.0, DONE)])
    assert [(e.t, e.text, e.n_tokens) for e in p.events] == [(1.0, "a", None), (2.0, "b", None)]
    assert p.saw_done and p.error is None
    assert p.prompt_tokens is None and p.completion_tokens is None


def test_several_events_in_one_read_share_its_timestamp():
    p = parse_stream([(1.5, ev(comp("a")) + ev(comp("b")) + ev(comp("c"))), (1.7, DONE)])
    assert [(e.t, e.text) for e in p.events] == [(1.5, "a"), (1.5, "b"), (1.5, "c")]


def test_event_split_across_reads_takes_the_completing_read():
    whole = ev(comp("hello"))
    # The first read ends mid-JSON, the second holds the rest but not the blank line, the third the "\n".
    p = parse_stream([(1.0, whole[:10]), (2.0, whole[10:-1]), (3.0, whole[-1:] + ev(comp("x"))[:4]),
                      (4.0, ev(comp("x"))[4:] + DONE)])
    assert [(e.t, e.text) for e in p.events] == [(3.0, "hello"), (4.0, "x")]
    assert p.saw_done and p.error is None


def test_blank_line_split_between_reads():
    whole = ev(comp("a"))
    p = parse_stream([(1.0, whole[:-1]), (2.0, b"\n" + DONE)])
    assert [(e.t, e.text) for e in p.events] == [(2.0, "a")]


def test_crlf_separators_including_a_split_crlf():
    a, b = ev(comp("a"), b"\r\n\r\n"), ev(comp("b"), b"\r\n\r\n")
    p = parse_stream([(1.0, a[:-1]), (2.0, a[-1:] + b[:-3]), (3.0, b[-3:] + b"data: [DONE]\r\n\r\n")])
    assert [(e.t, e.text) for e in p.events] == [(2.0, "a"), (3.0, "b")]
    assert p.saw_done and p.error is None


def test_keepalive_comments_and_other_fields_are_ignored():
    body = b": ping\n\n" + b"event: message\nid: 7\n" + ev(comp("a")) + b": ping - 2024\n\nretry: 100\n\n" + DONE
    p = parse_stream([(1.0, body)])
    assert [e.text for e in p.events] == ["a"] and p.saw_done and p.error is None


def test_multiline_data_is_joined_with_newline():
    obj = json.dumps(comp("a"), indent=1).split("\n")
    body = "".join(f"data: {line}\n" for line in obj).encode() + b"\n" + DONE
    p = parse_stream([(1.0, body)])
    assert [e.text for e in p.events] == ["a"] and p.error is None


def test_data_without_space_after_colon():
    p = parse_stream([(1.0, b"data:" + json.dumps(comp("a")).encode() + b"\n\ndata:[DONE]\n\n")])
    assert [e.text for e in p.events] == ["a"] and p.saw_done


def test_token_ids_give_tokens_per_event():
    p = parse_stream([(1.0, ev(comp("ab", [5, 6]))), (2.0, ev(comp("cde", [7, 8, 9]))), (3.0, DONE)])
    assert [e.n_tokens for e in p.events] == [2, 3]


def test_empty_text_with_token_ids_is_a_token_event():
    # vLLM streams "" with the id when a token ends in the middle of a UTF-8 character.
    p = parse_stream([(1.0, ev(comp("", [200]))), (2.0, ev(comp("é", [201]))), (3.0, DONE)])
    assert [(e.t, e.n_tokens, e.text) for e in p.events] == [(1.0, 1, ""), (2.0, 1, "é")]


def test_empty_and_null_text_chunks_are_not_token_events():
    p = parse_stream([(1.0, ev(comp(""))), (2.0, ev(comp(None))), (3.0, ev(comp("", []))), (4.0, ev(comp("z"))),
                      (5.0, ev({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]})), (6.0, DONE)])
    assert [(e.t, e.text) for e in p.events] == [(4.0, "z")]


def test_role_only_first_chat_chunk_is_not_a_token_event():
    p = parse_stream([(1.0, ev(chat(role="assistant"))), (1.1, ev(chat("", role="assistant"))),
                      (2.0, ev(chat("Hi"))), (3.0, ev(chat(" there"))), (3.5, ev(chat(None))), (4.0, DONE)])
    assert [(e.t, e.text) for e in p.events] == [(2.0, "Hi"), (3.0, " there")]


def test_chat_reasoning_content_is_generated_text():
    p = parse_stream([(1.0, ev(chat(None, reasoning_content="think"))), (2.0, ev(chat("ok"))), (3.0, DONE)])
    assert [(e.t, e.text) for e in p.events] == [(1.0, "think"), (2.0, "ok")]


def test_usage_only_final_chunk_sets_counts_and_is_not_a_token():
    p = parse_stream([(1.0, ev(comp("a"))), (2.0, ev(usage_only(12, 1))), (3.0, DONE)])
    assert len(p.events) == 1
    assert (p.prompt_tokens, p.completion_tokens) == (12, 1)


def test_usage_attached_to_a_content_chunk():
    p = parse_stream([(1.0, ev(comp("a", usage={"prompt_tokens": 3, "completion_tokens": 1}))),
                      (2.0, ev(comp("b", usage={"prompt_tokens": 3, "completion_tokens": 2}))), (3.0, DONE)])
    assert [e.text for e in p.events] == ["a", "b"]
    assert (p.prompt_tokens, p.completion_tokens) == (3, 2)  # the last one wins (continuous usage stats)


def test_null_usage_does_not_erase_counts():
    p = parse_stream([(1.0, ev(usage_only(4, 2))), (2.0, ev({"choices": [], "usage": None})), (3.0, DONE)])
    assert (p.prompt_tokens, p.completion_tokens) == (4, 2)


def test_error_event_openai_style():
    p = parse_stream([(1.0, ev(comp("a"))), (2.0, ev({"error": {"message": "engine died", "code": 500}}))])
    assert p.error == "error event: engine died"
    assert len(p.events) == 1 and not p.saw_done


def test_error_event_vllm_object_style():
    p = parse_stream([(1.0, ev({"object": "error", "message": "too long", "type": "BadRequestError", "code": 400})),
                      (2.0, DONE)])
    assert p.error == "error event: too long" and p.saw_done and p.events == []


def test_null_error_field_is_not_an_error():
    p = parse_stream([(1.0, ev({**comp("a"), "error": None})), (2.0, DONE)])
    assert p.error is None and len(p.events) == 1


def test_undecodable_json_sets_error_and_parsing_goes_on():
    p = parse_stream([(1.0, b'data: {"choices": [\n\n'), (2.0, ev(comp("b"))), (3.0, DONE)])
    assert p.error is not None and p.error.startswith("undecodable SSE data")
    assert [e.text for e in p.events] == ["b"] and p.saw_done


def test_first_problem_is_kept():
    p = parse_stream([(1.0, b"data: nope\n\n"), (2.0, ev({"error": {"message": "later"}}))])
    assert p.error.startswith("undecodable SSE data: 'nope'")


def test_garbage_body_without_blank_line():
    p = parse_stream([(1.0, b"<html><body>502 Bad Gateway</body></html>")])
    assert p.error.startswith("incomplete SSE event at end of stream") and p.events == [] and not p.saw_done


def test_garbage_body_with_blank_lines_is_not_sse():
    p = parse_stream([(1.0, b"<html>\n\n<body>oops</body>\n\n</html>")])
    assert p.error.startswith("not an SSE event: b'<html>'")


def test_non_object_json_and_bad_choices():
    assert parse_stream([(1.0, b"data: [1, 2]\n\n" + DONE)]).error.startswith("unexpected SSE data")
    assert parse_stream([(1.0, b'data: {"choices": ["x"]}\n\n' + DONE)]).error.startswith("unexpected choices")


def test_stream_cut_inside_an_event():
    p = parse_stream([(1.0, ev(comp("a"))), (2.0, ev(comp("b"))[:-2])])
    assert [e.text for e in p.events] == ["a"]
    assert p.error.startswith("incomplete SSE event at end of stream") and not p.saw_done


def test_final_done_without_blank_line_counts():
    p = parse_stream([(1.0, ev(comp("a"))), (2.0, b"data: [DONE]\n")])
    assert p.saw_done and p.error is None


def test_no_reads():
    p = parse_stream([])
    assert p.events == [] and not p.saw_done and p.error is None


@given(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=8), st.data())
def test_any_split_of_the_bytes_gives_the_same_events(texts, data):
    """Splitting the stream anywhere changes only timestamps, never which events exist."""
    body = b"".join(ev(comp(t)) for t in texts) + DONE
    cuts = sorted(data.draw(st.lists(st.integers(1, len(body) - 1), max_size=10, unique=True)))
    bounds = [0, *cuts, len(body)]
    reads = [(float(i), body[a:b]) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]
    p = parse_stream(reads)
    assert [e.text for e in p.events] == texts
    assert p.saw_done and p.error is None
    # Each event carries the time of the read holding its terminating blank line.
    pos, ends = 0, []
    for t in texts:
        pos = body.index(b"\n\n", pos) + 2
        ends.append(pos)
    expected = [float(next(i for i, b in enumerate(bounds[1:]) if b >= end)) for end in ends]
    assert [e.t for e in p.events] == expected
