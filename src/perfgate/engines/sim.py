"""The reference engine ``perfgate.sim``: a test instrument with exactly known timing.

It starts through the same lifecycle as real engines so that the spawn,
readiness and teardown code it exercises is the code real engines use.
"""

from __future__ import annotations

import sys
from pathlib import Path

from perfgate.config.matrix import EngineConfig
from perfgate.engines.base import EngineCapabilities, LaunchPlan, ModelRef


class SimAdapter:
    name = "sim"
    distribution = None
    gpu_memory_fraction = None  # a CPU process: preflight sizes nothing
    capabilities = EngineCapabilities(token_ids_in_stream=True, tokenize="prompt-or-messages", metrics_prefix="vllm:")  # it mimics vLLM's metric names

    def launch_plan(self, python: Path, model: ModelRef, host: str, port: int, config: EngineConfig) -> LaunchPlan:
        command = [
            sys.executable, "-m", "perfgate.sim",
            "--host", host, "--port", str(port), "--model-name", model.name,
            *config.flags, *model.engine_args,  # a model's arguments, as for any engine (later flags win)
        ]
        return LaunchPlan(command=command, env=config.env_dict, health_path="/health",
                          flags=[*config.flags, *model.engine_args])

    def version_paths(self) -> tuple[str, ...]:
        return ("/version",)
