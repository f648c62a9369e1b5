"""Builders of OpenAI-style SSE events, shared by the parser and metric tests."""

from __future__ import annotations

import json


def ev(obj) -> bytes:
    """One SSE event carrying ``obj`` as JSON."""
    return f"data: {json.dumps(obj)}\n\n".encode()


def comp(text, ids=None):
    """A completions chunk with ``text`` (and its token ids when given)."""
    c = {"index": 0, "text": text}
    if ids is not None:
        c["token_ids"] = ids
    return {"choices": [c]}
