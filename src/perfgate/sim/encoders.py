"""Where a request's chunks go: OpenAI-shaped SSE events on a stream, or one JSON body.

The shapes are vLLM's (a chat stream opens with a role-only chunk; usage only
when ``stream_options.include_usage``; ``token_ids`` when
``return_token_ids``), so perfgate's SSE parser reads the sim as it reads a
real engine. The stream encoder also writes the chunks the fault modes garble
(malformed JSON, oversized events, bytes that are not UTF-8), and records in
the truth when the headers and the role chunk went out.
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from perfgate.sim.faults import Fault
from perfgate.sim.request import GenRequest
from perfgate.sim.state import RequestTruth


def sse(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


class Output:
    """Where the chunks go: written as SSE events, or collected into one JSON body."""

    resp: web.StreamResponse | None = None  # once created

    def __init__(self, request: web.Request, req: GenRequest, truth: RequestTruth, model: str):
        self.request, self.req, self.truth, self.model = request, req, truth, model
        self.created = int(time.time())
        self.chat = req.api == "chat"

    def _envelope(self, choices: list, **extra) -> dict:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {"id": self.truth.id, "object": kind, "created": self.created, "model": self.model,
                "choices": choices, **extra}

    async def start(self) -> None: ...

    async def chunk(self, token_ids: list[int], text: str, last: bool, hold: bool = False,
                    finish: str = "length") -> None: ...

    async def faulty_chunk(self, fault: Fault, token_ids: list[int], text: str, last: bool) -> None:
        raise NotImplementedError("stream faults act on streams only")

    async def finish(self, usage: dict | None) -> web.StreamResponse: ...


class SSEOutput(Output):
    held = b""  # events written with a later one, in one write (coalesce)

    async def start(self) -> None:
        self.resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await self.resp.prepare(self.request)  # a StreamResponse sends its headers at once
        self.truth.headers_sent = time.perf_counter()
        if self.chat:  # like vLLM: a role-only chunk before any token
            await self.resp.write(sse(self._envelope(
                [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}])))
            self.truth.role_written = time.perf_counter()

    def event(self, token_ids: list[int], text: str, last: bool, finish: str = "length") -> dict:
        choice: dict = {"index": 0, "logprobs": None, "finish_reason": finish if last else None}
        if self.chat:
            choice["delta"] = {"content": text}
        else:
            choice["text"] = text
        if self.req.return_token_ids:
            choice["token_ids"] = token_ids
        return self._envelope([choice])

    async def chunk(self, token_ids: list[int], text: str, last: bool, hold: bool = False,
                    finish: str = "length") -> None:
        assert self.resp is not None
        data = self.held + sse(self.event(token_ids, text, last, finish))
        self.held = data if hold else b""
        if not hold:
            await self.resp.write(data)

    async def faulty_chunk(self, fault: Fault, token_ids: list[int], text: str, last: bool) -> None:
        """Write this chunk the way ``fault`` garbles it (malformed-json, oversized-chunk, invalid-utf8)."""
        assert self.resp is not None
        obj = self.event(token_ids, text, last)
        if fault.kind == "malformed-json":
            data = sse(obj)
            data = data[: len(data) // 2] + b"\n\n"  # the JSON is cut in the middle
        elif fault.kind == "oversized-chunk":
            data = sse({**obj, "perfgate_padding": "x" * int(fault.value)})
        else:  # invalid-utf8: two bytes that never occur in UTF-8, inside the text string
            quoted = json.dumps(text).encode()
            data = sse(obj).replace(quoted, quoted[:-1] + b"\xff\xfe\"", 1)
        await self.resp.write(data)

    async def finish(self, usage: dict | None) -> web.StreamResponse:
        assert self.resp is not None
        if self.req.include_usage and usage is not None:
            await self.resp.write(sse(self._envelope([], usage=usage)))
        await self.resp.write(b"data: [DONE]\n\n")
        await self.resp.write_eof()
        return self.resp


class JSONOutput(Output):
    finish_reason = "length"

    async def start(self) -> None:
        self.texts: list[str] = []
        self.ids: list[int] = []

    async def chunk(self, token_ids: list[int], text: str, last: bool, hold: bool = False,
                    finish: str = "length") -> None:
        self.finish_reason = finish
        self.texts.append(text)
        self.ids.extend(token_ids)

    async def finish(self, usage: dict | None) -> web.StreamResponse:
        text = "".join(self.texts)
        choice: dict = {"index": 0, "logprobs": None, "finish_reason": self.finish_reason}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        if self.req.return_token_ids:
            choice["token_ids"] = self.ids
        body = self._envelope([choice], **({"usage": usage} if usage is not None else {}))
        body["object"] = "chat.completion" if self.chat else "text_completion"
        self.resp = web.json_response(body)
        await self.resp.prepare(self.request)  # send it here, so that `done` is after the write
        await self.resp.write_eof()
        return self.resp
