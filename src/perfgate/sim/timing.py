"""The sim's timing model: when each chunk of a request is due.

Per request (all delays in ms, measured from request arrival):

* the first content chunk is due at arrival + A + B·prompt_tokens
* then one chunk every C·K, each carrying K tokens (the last may carry fewer
  and is due C·k after the previous one, k being its token count)
* when F > 0, every delay × (1 + F·(in_flight − 1)); in_flight counts this
  request and is read when the delay is scheduled (at arrival for the first
  chunk, right after the previous chunk was written for the others)
* when J > 0, every delay + N(0, J) jitter (a delay never goes below 0), drawn
  from a generator seeded with (S, request index): the n-th request after a
  start or ``/sim/reset`` gets the same jitter on every run

Every request generates exactly ``max_tokens`` tokens (ignore_eos semantics).
Prompt tokens = whitespace-separated words of the prompt (for chat, of all
message contents); a prompt given as a list of token ids counts its length.

Chunks are written on absolute deadlines (``loop.time()``), never after
cumulative sleeps, so lateness does not accumulate: a late chunk does not delay
the next one's deadline. Truth timestamps are ``time.perf_counter()``, which is
CLOCK_MONOTONIC on Linux and therefore comparable with a client process's
``perf_counter`` on the same machine.
"""

from __future__ import annotations

import asyncio
import math
import random

from perfgate.sim.config import SimConfig


def chunk_sizes(max_tokens: int, per_chunk: int) -> list[int]:
    return [min(per_chunk, max_tokens - i) for i in range(0, max_tokens, per_chunk)]


def base_delays_ms(config: SimConfig, prompt_tokens: int, sizes: list[int], index: int) -> list[float]:
    """Each chunk's delay after the previous deadline (the first: after arrival), before the load factor."""
    delays = [config.ttft_base_ms + config.ttft_per_prompt_token_ms * prompt_tokens]
    delays += [config.itl_ms * k for k in sizes[1:]]
    if config.jitter_ms:
        rng = random.Random(f"{config.seed}:{index}")  # str seeds hash with SHA-512: stable across processes
        delays = [max(0.0, d + rng.gauss(0.0, config.jitter_ms)) for d in delays]
    return delays


def boot_factor(config: SimConfig) -> float:
    """This boot's speed factor exp(N(0, boot_sigma)), drawn from (seed, boot_seed): one per process."""
    return math.exp(random.Random(f"{config.seed}:boot:{config.boot_seed}").gauss(0.0, 1.0) * config.boot_sigma)


def delay_factor(config: SimConfig, boot: float, elapsed_s: float, inflight: int) -> float:
    """What multiplies a delay scheduled ``elapsed_s`` after start with ``inflight`` requests generating."""
    drift = 1.0 + config.drift_per_min * elapsed_s / 60.0
    return (config.inject_slowdown * boot * max(drift, 0.01)
            * (1.0 + config.slowdown_per_inflight * max(0, inflight - 1)))


async def sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    """Sleep until ``loop.time() >= deadline`` (an absolute deadline, not a duration)."""
    if deadline <= loop.time():
        return
    fut = loop.create_future()
    handle = loop.call_at(deadline, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        handle.cancel()
