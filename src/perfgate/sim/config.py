"""``SimConfig``: the timing model's parameters and the identity of one simulator, validated once.

The fields are the letters of the timing model (:mod:`perfgate.sim.timing`),
the noise of a real machine, capacity and delivery faults, and the fault modes
(:mod:`perfgate.sim.faults`). ``perfgate sim``'s flags map one to one onto them
(:mod:`perfgate.sim.cli`; the table is in docs/sim.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from perfgate.sim.faults import Fault, find


@dataclass(frozen=True)
class SimConfig:
    """The timing model and identity of one simulator."""

    model_name: str = "sim"
    ttft_base_ms: float = 50.0  # A
    ttft_per_prompt_token_ms: float = 0.0  # B
    itl_ms: float = 5.0  # C: per token, so a chunk of K tokens is due C·K after the previous one
    tokens_per_chunk: int = 1  # K
    slowdown_per_inflight: float = 0.0  # F
    jitter_ms: float = 0.0  # J: σ of Gaussian jitter added to every delay
    seed: int = 0  # S: jitter seed
    version: str = "sim-1"  # reported by /version
    max_model_len: int = 32768  # prompt + max_tokens beyond this is a 400, as in vLLM; reported by /tokenize
    # Noise of a real machine, for the statistics' power curves (docs/sim.md): every delay is multiplied by a
    # per-boot speed factor exp(N(0, boot_sigma)) drawn once per process from (seed, boot_seed), and by
    # 1 + drift_per_min * minutes since start (a machine that warms up or throttles).
    boot_sigma: float = 0.0
    boot_seed: int = 0
    drift_per_min: float = 0.0
    # Multiplies every delay. Set through the environment (PERFGATE_SIM_INJECT_SLOWDOWN)
    # so that the engine's flags, and with them the baseline fingerprint, stay the same:
    # this is how tests inject a known regression.
    inject_slowdown: float = 1.0
    # Capacity and delivery faults (docs/sim.md): at most `max_running` requests generate at once, the rest wait
    # in arrival order (0: no limit); `eos_after` > 0 stops every request after that many tokens although
    # ignore_eos is asked (an engine that stops early); `coalesce` > 1 writes that many chunks in one write.
    max_running: int = 0
    eos_after: int = 0
    coalesce: int = 1
    faults: tuple[Fault, ...] = ()  # fault modes (--fault KIND[:PARAM]); none: a well-behaved engine

    def fault(self, kind: str) -> Fault | None:
        return find(self.faults, kind)

    def __post_init__(self) -> None:
        if self.tokens_per_chunk < 1:
            raise ValueError("tokens_per_chunk must be >= 1")
        for name in ("ttft_base_ms", "ttft_per_prompt_token_ms", "itl_ms", "slowdown_per_inflight", "jitter_ms",
                     "boot_sigma"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.inject_slowdown <= 0:
            raise ValueError("inject_slowdown must be > 0")
        if self.max_model_len < 1:
            raise ValueError("max_model_len must be >= 1")
        if self.max_running < 0 or self.eos_after < 0 or self.coalesce < 1:
            raise ValueError("max_running and eos_after must be >= 0, coalesce >= 1")
