"""Parse a recorded OpenAI-compatible SSE stream, after the measurement window.

Input is the raw socket reads ``[(timestamp, bytes), ...]`` recorded by the
load client. An event's timestamp is the timestamp of the read that completed
it (the read holding its terminating blank line): that is when a client could
first have acted on it. Events end with ``\\n\\n`` or ``\\r\\n\\r\\n``; a read
may hold several events, part of one, or only a keep-alive comment.

What counts as a token event: an event whose first choice carries generated
content (``choices[0].text``, ``choices[0].delta.content``, or a reasoning
model's ``delta.reasoning_content`` / ``delta.reasoning``) or, when the server
returns them (vLLM ``return_token_ids``), non-empty ``choices[0].token_ids``.
vLLM sends token ids with an empty text when a token ends mid UTF-8
character, so ids win over text. A role-only first chat chunk, empty chunks
and the usage-only final chunk (``choices: []``) are not token events.

Parsing never raises: the first problem found (an error event, undecodable
JSON, data that is not UTF-8, bytes that are not SSE, an unterminated event at the end) is described
in ``ParsedStream.error`` and parsing goes on. The one leniency: a final
``data: [DONE]`` line cut off by the connection closing, without its blank
line, still counts as ``[DONE]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from perfgate.measure.records import ParsedStream, TokenEvent

_SSE_FIELDS = (b"data", b"event", b"id", b"retry")
_CRS_LF = re.compile(rb"\r+\n")
ERROR_EVENT_PREFIX = "error event: "
"""``ParsedStream.error`` starts with this when the server sent an error event (vs. unparseable bytes)."""


def _iter_events(chunks: list[tuple[float, bytes]]) -> Iterator[tuple[float | None, str | None, bytes]]:
    """Yield ``(t, data_payload, raw_block)`` for every SSE event.

    ``data_payload`` is None for a block without ``data:`` lines (comments,
    keep-alives, non-SSE bytes). A trailing block without its blank line comes
    last with ``t=None``.
    """
    buf = b""
    for t, data in chunks:
        buf += data
        if b"\r" in buf:  # a CR LF split across two reads is joined here before replacing
            buf = _CRS_LF.sub(b"\n", buf)  # all CRs before an LF: the same bytes whatever the read boundaries
        while (end := buf.find(b"\n\n")) >= 0:
            block, buf = buf[:end], buf[end + 2:]
            yield t, _data_of(block), block
    if buf.strip():
        yield None, _data_of(buf.rstrip(b"\n")), buf


def _data_of(block: bytes) -> str | None:
    lines = [ln[5:] for ln in block.split(b"\n") if ln.startswith(b"data:")]
    if not lines:
        return None
    # SSE strips one space after the colon; several data lines join with "\n".
    payload = b"\n".join(ln[1:] if ln.startswith(b" ") else ln for ln in lines)
    return payload.decode("utf-8", errors="replace")


def _is_sse_block(block: bytes) -> bool:
    """True when every non-empty line is a comment or ``field:value`` (unknown fields are allowed)."""
    for ln in block.split(b"\n"):
        if ln and not ln.startswith(b":") and b":" not in ln and ln.strip() not in _SSE_FIELDS:
            return False
    return True


def _choice_content(choice: dict) -> str:
    """Generated text of one choice: completions ``text`` or chat ``delta`` content (reasoning included)."""
    text = choice.get("text")
    if isinstance(text, str):
        return text
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return ""
    parts = [delta.get(k) for k in ("reasoning_content", "reasoning", "content")]
    return "".join(p for p in parts if isinstance(p, str))


def _is_utf8(block: bytes) -> bool:
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _short(payload: str | bytes) -> str:
    return repr(payload[:80])


def parse_stream(chunks: list[tuple[float, bytes]]) -> ParsedStream:
    """Parse one recorded stream; never raises (problems land in ``error``)."""
    out = ParsedStream()

    def fail(msg: str) -> None:
        if out.error is None:  # the first problem is the informative one
            out.error = msg

    for t, payload, block in _iter_events(chunks):
        if t is None:  # the stream ended inside an event
            if payload is not None and payload.strip() == "[DONE]":
                out.saw_done = True  # the connection closing ends a complete [DONE] line
            elif not out.saw_done:
                fail(f"incomplete SSE event at end of stream: {_short(block)}")
            continue
        if payload is None:
            if not _is_sse_block(block):
                fail(f"not an SSE event: {_short(block)}")
            continue  # comment / keep-alive (": ping") or event without data
        if payload.strip() == "[DONE]":
            out.saw_done = True
            continue
        if "\ufffd" in payload and not _is_utf8(block):  # SSE is UTF-8: the text would be made up
            fail(f"SSE data is not UTF-8: {_short(block)}")
            continue
        try:
            obj = json.loads(payload)
        except ValueError:
            fail(f"undecodable SSE data: {_short(payload)}")
            continue
        if not isinstance(obj, dict):
            fail(f"unexpected SSE data: {_short(payload)}")
            continue
        if obj.get("error") is not None or obj.get("object") == "error":
            err = obj.get("error") if obj.get("error") is not None else obj
            msg = err.get("message", err) if isinstance(err, dict) else err
            fail(f"{ERROR_EVENT_PREFIX}{str(msg)[:200]}")
            continue
        usage = obj.get("usage")
        if isinstance(usage, dict):  # the usage-only final chunk, or usage attached to a content chunk
            if isinstance(usage.get("prompt_tokens"), int):
                out.prompt_tokens = usage["prompt_tokens"]
            if isinstance(usage.get("completion_tokens"), int):
                out.completion_tokens = usage["completion_tokens"]
        choices = obj.get("choices")
        if not choices:
            continue
        choice = choices[0] if isinstance(choices, list) else None
        if not isinstance(choice, dict):
            fail(f"unexpected choices in SSE data: {_short(payload)}")
            continue
        text = _choice_content(choice)
        ids = choice.get("token_ids")
        n = len(ids) if isinstance(ids, list) and ids else None
        if n is not None or text:
            out.events.append(TokenEvent(t=t, n_tokens=n, text=text))
    return out
