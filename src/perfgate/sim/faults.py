"""The sim's fault modes: misbehaving on purpose, the way engines do in the night.

Crash, hang, refuse, or send a stream that lies. Faults never touch the timing
model: a request a fault leaves alone is timed exactly as without it. Counts
are per process ("requests" are generation requests, the readiness probe
included; "tokens" are content tokens written to any stream) or per stream
("chunk N" is its N-th content chunk, 1-based). This module holds the
vocabulary, the ``--fault`` parser, the decisions (which request is refused,
which chunk is garbled or cut) and the two acts that end something (the crash,
the cut stream); the server state counts and calls them (:mod:`perfgate.sim.state`).
docs/faults.md has the matrix of what perfgate makes of each.
"""

from __future__ import annotations

import math
import os
import socket
import struct
import sys
from dataclasses import dataclass
from typing import NoReturn

from aiohttp import web

FAULTS: dict[str, str] = {
    "exit-at-boot": "CODE: exit with CODE (default 1) before listening",
    "slow-boot": "SECONDS: sleep SECONDS before listening",
    "crash-after-requests": "N: the process exits (code 1) when generation request N+1 arrives",
    "crash-after-tokens": "N: the process exits (code 1) once N tokens were written in all",
    "hang-after-tokens": "N: once N tokens were written in all, every stream stops writing and keeps its "
                         "connection open; /health still answers",
    "http-429": "F or after=N: answer 429 to a fraction F of generation requests, or to all after the first N",
    "http-500": "F or after=N: the same with 500",
    "http-503": "F or after=N: the same with 503",
    "truncate": "N: every stream ends cleanly after N content chunks, without usage and [DONE]",
    "malformed-json": "N: every stream's chunk N is cut-off JSON (the stream goes on)",
    "oversized-chunk": "BYTES: every stream's first chunk carries BYTES of padding in one SSE event",
    "invalid-utf8": "N: every stream's chunk N holds bytes that are not UTF-8",
    "reset": "N: every stream's connection is reset (TCP RST) after N content chunks",
    "no-usage": "send no usage block and no token_ids, whatever the request asks (an endpoint that never "
                "says what it counted)",
    "replicas": "N: /metrics answers as one of N processes in turn (another process_start_time_seconds each "
                "scrape), as N pods behind one URL do",
    "not-sse": "KIND: answer stream=true with a 200 that is not an event stream: json (the non-stream "
               "body) or html (a proxy's sign-in page)",
}
FLAG_FAULTS = ("no-usage",)
"""Faults without a parameter."""
NOT_SSE_KINDS = ("json", "html")
FAULT_EXIT_CODE = 1


@dataclass(frozen=True)
class Fault:
    """One fault mode: its kind and parameter (``after`` set for the "after=N" form of the http faults)."""

    kind: str
    value: float = 0.0
    after: int | None = None


def parse_fault(text: str) -> Fault:
    """``KIND[:PARAM]`` as given to ``--fault``; ValueError with one line on anything else."""
    kind, _, param = text.partition(":")
    if kind not in FAULTS:  # the sim imports nothing of perfgate (tests/unit/test_layout.py): its own hint
        import difflib

        close = difflib.get_close_matches(kind, FAULTS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(FAULTS)}"
        raise ValueError(f"unknown fault {kind!r}{hint}")
    if kind.startswith("http-") and param.startswith("after="):
        after = param[len("after="):]
        if not after.isdigit():
            raise ValueError(f"fault {kind}: after=N needs a whole number, not {after!r}")
        return Fault(kind, 1.0, int(after))
    if kind in FLAG_FAULTS:
        if param:
            raise ValueError(f"fault {kind} takes no parameter")
        return Fault(kind, 1.0)
    if kind == "not-sse":
        if param not in NOT_SSE_KINDS:
            raise ValueError(f"fault not-sse: give one of {', '.join(NOT_SSE_KINDS)}, not {param!r}")
        return Fault(kind, float(NOT_SSE_KINDS.index(param)))
    if not param:
        if kind == "exit-at-boot":
            return Fault(kind, float(FAULT_EXIT_CODE))
        raise ValueError(f"fault {kind} needs a parameter: {kind}:{FAULTS[kind]}")
    try:
        value = float(param)
    except ValueError:
        raise ValueError(f"fault {kind}: {param!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"fault {kind}: {param!r} must be a finite number >= 0")
    if kind.startswith("http-") and not 0 < value <= 1:
        raise ValueError(f"fault {kind}: the fraction must be in (0, 1], not {param}")
    if kind == "replicas" and (value < 1 or value != int(value)):
        raise ValueError(f"fault replicas: give a whole number of processes >= 1, not {param}")
    if kind in ("malformed-json", "invalid-utf8") and value < 1:
        raise ValueError(f"fault {kind}: chunk numbers start at 1")
    return Fault(kind, value)


def find(faults: tuple[Fault, ...], kind: str) -> Fault | None:
    return next((f for f in faults if f.kind == kind), None)


def refusal_status(faults: tuple[Fault, ...], i: int) -> int | None:
    """The HTTP status an http-* fault answers generation request ``i`` (0-based) with; None: serve it."""
    for status in (429, 500, 503):
        f = find(faults, f"http-{status}")
        if f is None:
            continue
        # A fraction F refuses request i when floor((i+1)F) > floor(iF): exactly F of every 1/F, spread evenly.
        hit = i >= f.after if f.after is not None else math.floor((i + 1) * f.value) > math.floor(i * f.value)
        if hit:
            return status
    return None


def stream_fault(faults: tuple[Fault, ...], n: int) -> Fault | None:
    """The fault that acts on a stream's content chunk ``n`` (0-based), if any."""
    for kind in ("truncate", "reset"):
        f = find(faults, kind)
        if f is not None and n >= f.value:
            return f
    for kind in ("malformed-json", "invalid-utf8"):
        f = find(faults, kind)
        if f is not None and n + 1 == f.value:
            return f
    f = find(faults, "oversized-chunk")
    if f is not None and n == 0:
        return f
    return None


def crash(why: str) -> NoReturn:
    """Die the way a crashed engine does: at once, mid-write, nothing flushed to clients."""
    print(f"perfgate sim: fault {why}: exiting with code {FAULT_EXIT_CODE}", file=sys.stderr, flush=True)
    os._exit(FAULT_EXIT_CODE)


async def cut(request: web.Request, resp: web.StreamResponse, kind: str) -> web.StreamResponse:
    """End a started stream early: ``truncate`` closes it cleanly, ``reset`` aborts the connection (RST)."""
    if kind == "truncate":
        await resp.write_eof()
        return resp
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:  # linger 0: close() sends RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    return resp
