"""``perfgate sim`` / ``python -m perfgate.sim``: the flags, the ``SimConfig`` they make, and the server's start.

The flags map one to one onto :class:`~perfgate.sim.config.SimConfig` (the
table is in docs/sim.md); ``--help`` prints the timing model. The boot-time
faults (``exit-at-boot``, ``slow-boot``) act here, before listening; it listens
on loopback only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from aiohttp import web

from perfgate.sim import timing
from perfgate.sim.app import build_app
from perfgate.sim.config import SimConfig
from perfgate.sim.faults import FAULTS, parse_fault

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ABOUT = """\
``perfgate sim``: a reference engine whose timing is known exactly.

A **test instrument**, not an engine and not a mock of vLLM: an
OpenAI-compatible streaming server whose timing follows a small model, and
which records server-side truth (request arrival, and the intended and actual
write time of every chunk) so that a client's measurements can be checked
against it. Listens on loopback only.
"""


def _parser() -> argparse.ArgumentParser:
    d = SimConfig()
    p = argparse.ArgumentParser(
        prog="perfgate sim", description=f"{_ABOUT}\n{timing.__doc__}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Environment: PERFGATE_SIM_INJECT_SLOWDOWN=x multiplies every delay by x without changing the "
               "flags (tests use it to inject a known regression). Endpoints and truth format: docs/sim.md.")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model-name", default=d.model_name)
    p.add_argument("--ttft-base-ms", type=float, default=d.ttft_base_ms, metavar="A")
    p.add_argument("--ttft-per-prompt-token-ms", type=float, default=d.ttft_per_prompt_token_ms, metavar="B")
    p.add_argument("--itl-ms", type=float, default=d.itl_ms, metavar="C", help="per token")
    p.add_argument("--tokens-per-chunk", type=int, default=d.tokens_per_chunk, metavar="K")
    p.add_argument("--slowdown-per-inflight", type=float, default=d.slowdown_per_inflight, metavar="F")
    p.add_argument("--jitter-ms", type=float, default=d.jitter_ms, metavar="J")
    p.add_argument("--seed", type=int, default=d.seed, metavar="S")
    p.add_argument("--version", default=d.version, metavar="V", help="reported by GET /version")
    p.add_argument("--max-model-len", type=int, default=d.max_model_len)
    p.add_argument("--boot-sigma", type=float, default=d.boot_sigma,
                   help="sigma of the log of a per-boot speed factor (boot-to-boot variance)")
    p.add_argument("--boot-seed", type=int, default=None,
                   help="draws this boot's factor (default: a new one every boot)")
    p.add_argument("--drift-per-min", type=float, default=d.drift_per_min,
                   help="delays grow by this fraction per minute since start (machine drift)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on every route but /health and /sim/* (as vLLM's --api-key)")
    p.add_argument("--check-model", action="store_true",
                   help="answer 404 for a request naming another model than --model-name (as vLLM does)")
    p.add_argument("--no-tokenize", action="store_true", help="serve no /tokenize (an engine without one)")
    p.add_argument("--openai-prefix", default="", metavar="PATH",
                    help="serve the OpenAI routes (/v1/...) under PATH, the server routes at the root (KServe: /openai)")
    p.add_argument("--fault", action="append", default=[], metavar="KIND[:PARAM]",
                   help="misbehave on purpose (repeatable): " + "; ".join(f"{k}:{v}" for k, v in FAULTS.items()))
    p.add_argument("--max-running", type=int, default=d.max_running,
                   help="at most this many requests generate at once, the rest queue (0: no limit)")
    p.add_argument("--eos-after", type=int, default=d.eos_after,
                   help="stop every request after this many tokens although ignore_eos is asked (a fault)")
    p.add_argument("--coalesce", type=int, default=d.coalesce,
                   help="write this many chunks in one write (a fault: coalesced events)")
    return p


def config_from_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, SimConfig]:
    p = _parser()
    a = p.parse_args(argv)
    try:
        faults = tuple(parse_fault(f) for f in a.fault)
        cfg = SimConfig(faults=faults, model_name=a.model_name, ttft_base_ms=a.ttft_base_ms,
                        ttft_per_prompt_token_ms=a.ttft_per_prompt_token_ms, itl_ms=a.itl_ms,
                        tokens_per_chunk=a.tokens_per_chunk, slowdown_per_inflight=a.slowdown_per_inflight,
                        jitter_ms=a.jitter_ms, seed=a.seed, version=a.version, max_model_len=a.max_model_len,
                        inject_slowdown=float(os.environ.get("PERFGATE_SIM_INJECT_SLOWDOWN", "1.0")),
                        boot_sigma=a.boot_sigma, drift_per_min=a.drift_per_min,
                        max_running=a.max_running, eos_after=a.eos_after, coalesce=a.coalesce,
                        boot_seed=a.boot_seed if a.boot_seed is not None else time.time_ns())
    except ValueError as e:
        p.error(str(e))
    return a, cfg


def main(argv: list[str] | None = None) -> int:
    a, cfg = config_from_args(argv)
    if a.host not in _LOOPBACK:
        print("perfgate sim: refusing to listen beyond loopback", file=sys.stderr)
        return 2
    if (f := cfg.fault("exit-at-boot")) is not None:
        print(f"perfgate sim: fault exit-at-boot: exiting with code {int(f.value)}", file=sys.stderr, flush=True)
        return int(f.value)
    if (f := cfg.fault("slow-boot")) is not None:
        print(f"perfgate sim: fault slow-boot: listening in {f.value:g}s", file=sys.stderr, flush=True)
        time.sleep(f.value)
    # A hung sim's handlers never finish; aiohttp's graceful shutdown would fill the log with their
    # tracebacks, so SIGTERM keeps its default action there (the process ends at once).
    web.run_app(build_app(cfg, api_key=a.api_key, check_model=a.check_model, tokenize=not a.no_tokenize,
                          openai_prefix=a.openai_prefix.rstrip("/")),
                host=a.host, port=a.port, access_log=None,
                handle_signals=cfg.fault("hang-after-tokens") is None,
                # A client interrupted mid-request leaves a half-sent request on an open connection; the
                # default graceful shutdown would wait 60 s for it. A test instrument stops at once.
                shutdown_timeout=1.0,
                print=lambda *_: print(f"perfgate sim on {a.host}:{a.port}", flush=True))
    return 0
