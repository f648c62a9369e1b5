"""The reference engine (``python -m perfgate.sim`` / ``perfgate sim``): a test instrument with exactly known timing.

It is not an engine perfgate measures for its users; it is what perfgate's own
client is held to (docs/sim.md). It depends on no other part of perfgate.
"""

from perfgate.sim.engine import (  # noqa: F401
    SIM_KEY,
    SimConfig,
    base_delays_ms,
    build_app,
    chunk_sizes,
    config_from_args,
    main,
)
