"""The reference engine (``python -m perfgate.sim`` / ``perfgate sim``): a test instrument with exactly known timing.

It is not an engine perfgate measures for its users; it is what perfgate's own
client is held to (docs/sim.md). It depends on no other part of perfgate.

One module per job: ``faults`` (the fault modes: vocabulary, parser,
decisions), ``config`` (``SimConfig``), ``timing`` (the timing model: when each
chunk is due), ``request`` (parse and validate a request; the sim's
tokenizer), ``state`` (the live ``Sim``: truth records, load, counters,
metrics), ``encoders`` (SSE events or one JSON body), ``generate`` (the
generation handler), ``app`` (the aiohttp routes) and ``cli`` (the flags and
``main``). The names below are the sim's public surface.
"""

from perfgate.sim.app import build_app
from perfgate.sim.cli import config_from_args, main
from perfgate.sim.config import SimConfig
from perfgate.sim.faults import FAULTS, Fault, parse_fault
from perfgate.sim.request import count_prompt_tokens
from perfgate.sim.state import SIM_KEY, RequestTruth, Sim
from perfgate.sim.timing import base_delays_ms, chunk_sizes

__all__ = ["SIM_KEY", "FAULTS", "Fault", "RequestTruth", "Sim", "SimConfig", "base_delays_ms", "build_app",
           "chunk_sizes", "config_from_args", "count_prompt_tokens", "main", "parse_fault"]
