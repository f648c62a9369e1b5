"""One generation request as the sim reads it: validated, its prompt counted, refused in vLLM's error shape.

The sim's tokenizer is whitespace-separated words (chat: of all message
contents); a prompt given as token ids counts its length. A request it cannot
serve is a :class:`BadRequest`, answered as vLLM answers it, so the client's
error path meets the same shape on the sim as on a real engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from perfgate.sim.config import SimConfig

_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions; used for chat too


class BadRequest(Exception):
    """A request the simulator refuses, answered with vLLM's error shape."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status

    def response(self) -> web.Response:
        kind = "BadRequestError" if self.status == 400 else "Error"
        # A rate limiter says when to come back (429: Retry-After 0, at once); an activator's 503 does not.
        headers = {"Retry-After": "0"} if self.status == 429 else None
        return web.json_response({"object": "error", "message": str(self), "type": kind, "param": None,
                                  "code": self.status}, status=self.status, headers=headers)


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return sum(len(str(p.get("text") or "").split()) for p in value if isinstance(p, dict))
    return 0


def count_prompt_tokens(body: dict) -> int:
    """The simulator's tokenizer: whitespace-separated words (chat: of all message contents)."""
    if "messages" in body:
        messages = body["messages"]
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise BadRequest("messages must be a list of objects")
        return sum(_words(m.get("content")) for m in messages)
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return len(prompt.split())
    if isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return len(prompt)  # already token ids
    raise BadRequest("prompt must be a string or a list of token ids (batched prompts are not supported)")


@dataclass(frozen=True)
class GenRequest:
    """A validated generation request."""

    api: str
    stream: bool
    prompt_tokens: int
    max_tokens: int
    include_usage: bool
    return_token_ids: bool


def parse_request(body: Any, api: str, config: SimConfig) -> GenRequest:
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    if api == "chat" and "messages" not in body:
        raise BadRequest("messages is required")
    if api == "completions" and "prompt" not in body:
        raise BadRequest("prompt is required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None and api == "chat":
        max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = _DEFAULT_MAX_TOKENS
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise BadRequest("max_tokens must be a positive integer")
    if body.get("n", 1) != 1:
        raise BadRequest("only n=1 is supported")
    prompt_tokens = count_prompt_tokens(body)
    if prompt_tokens + max_tokens > config.max_model_len:
        raise BadRequest(f"This model's maximum context length is {config.max_model_len} tokens. However, you "
                         f"requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, "
                         f"{max_tokens} in the completion). Please reduce the length of the messages or completion.")
    stream_options = body.get("stream_options") or {}
    return GenRequest(api=api, stream=bool(body.get("stream")), prompt_tokens=prompt_tokens, max_tokens=max_tokens,
                      include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
                      return_token_ids=bool(body.get("return_token_ids")))
