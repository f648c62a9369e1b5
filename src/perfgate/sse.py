"""Parse a recorded OpenAI-compatible SSE stream, after the measurement window.

Input is the raw socket reads ``[(timestamp, bytes), ...]`` recorded by the
load client. An event's timestamp is the timestamp of the read that completed
it (the read holding its terminating blank line): that is when a client could
first have acted on it.

What counts as a token event: an event whose choice carries generated text
(``choices[0].text`` or ``choices[0].delta.content``) or, when the server
returns them, non-empty ``choices[0].token_ids``. vLLM sends token ids with an
empty text when a token ends mid UTF-8 character, so ids win over text. A
role-only first chat chunk, empty chunks and the usage-only final chunk
(``choices: []``) are not token events.
"""

from __future__ import annotations

import json

from .records import ParsedStream, TokenEvent


def _iter_events(chunks: list[tuple[float, bytes]]):
    """Yield ``(timestamp, data_payload_str)`` for every complete SSE event."""
    buf = b""
    for t, data in chunks:
        buf += data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        while True:
            end = buf.find(b"\n\n")
            if end < 0:
                break
            raw, buf = buf[:end], buf[end + 2:]
            lines = [ln for ln in raw.split(b"\n") if ln.startswith(b"data:")]
            if not lines:  # comment / keep-alive (": ping") or event without data
                continue
            payload = b"\n".join(ln[5:].lstrip(b" ") for ln in lines)
            yield t, payload.decode("utf-8", errors="replace")
    if buf.strip():
        yield None, buf.decode("utf-8", errors="replace")  # trailing bytes without an event end


def parse_stream(chunks: list[tuple[float, bytes]]) -> ParsedStream:
    """Parse the whole stream; never raises (problems land in ``error``)."""
    out = ParsedStream()
    for t, payload in _iter_events(chunks):
        if t is None:
            if out.error is None and not out.saw_done:
                out.error = f"incomplete SSE event at end of stream: {payload[:80]!r}"
            continue
        if payload.strip() == "[DONE]":
            out.saw_done = True
            continue
        try:
            obj = json.loads(payload)
        except ValueError:
            if out.error is None:
                out.error = f"undecodable SSE data: {payload[:80]!r}"
            continue
        if not isinstance(obj, dict):
            out.error = out.error or f"unexpected SSE data: {payload[:80]!r}"
            continue
        if "error" in obj or obj.get("object") == "error":
            err = obj.get("error", obj)
            msg = err.get("message") if isinstance(err, dict) else err
            out.error = out.error or f"error event: {str(msg)[:200]}"
            continue
        usage = obj.get("usage")
        if isinstance(usage, dict):
            out.prompt_tokens = usage.get("prompt_tokens", out.prompt_tokens)
            out.completion_tokens = usage.get("completion_tokens", out.completion_tokens)
        choices = obj.get("choices") or []
        if not choices:
            continue
        choice = choices[0]
        text = choice.get("text")
        if text is None:
            text = (choice.get("delta") or {}).get("content")
        ids = choice.get("token_ids")
        n = len(ids) if isinstance(ids, list) else None
        if n or (n is None and text):
            out.events.append(TokenEvent(t=t, n_tokens=n, text=text or ""))
    return out
