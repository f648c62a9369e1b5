"""SGLang's server (``python -m sglang.launch_server``).

SGLang has no CPU build on PyPI, so this adapter is written to SGLang's
documented CLI and HTTP API and is exercised here only through its launch plan
and recorded responses; it runs for real on GPU runners.
"""

from __future__ import annotations

from pathlib import Path

from perfgate.config.matrix import EngineConfig
from perfgate.engines.base import (
    EngineCapabilities,
    LaunchPlan,
    ModelRef,
    model_args,
    revision_args,
    tensor_parallel_args,
)


class SglangAdapter:
    name = "sglang"
    distribution = "sglang"
    context_flag = "--context-length"
    tp_flag = "--tp-size"
    gpu_memory_fraction = ("--mem-fraction-static", 0.85)
    # /flush_cache answers 400 while requests are still running: retried, bounded (measure.trial.reset_prefix_cache)
    capabilities = EngineCapabilities(tokenize="prompt", cache_reset=("POST", "/flush_cache"), cache_reset_busy=400,
                                      metrics_prefix="sglang:")

    def launch_plan(self, python: Path, model: ModelRef, host: str, port: int, config: EngineConfig) -> LaunchPlan:
        tp, defaults = tensor_parallel_args(config, self.tp_flag), model_args(model, config, self.context_flag)
        command = [
            str(python), "-m", "sglang.launch_server",
            "--model-path", model.path, *revision_args(model, config), "--served-model-name", model.name,
            "--host", host, "--port", str(port),
            "--enable-metrics",  # exposes /metrics (sglang:* names)
            *tp, *defaults, *config.flags,
        ]
        env = {"HF_HUB_OFFLINE": "1", **config.env_dict}
        return LaunchPlan(command=command, env=env, health_path="/health", flags=[*config.flags, *defaults, *tp])

    def version_paths(self) -> tuple[str, ...]:
        # /server_info replaces the deprecated /get_server_info; older SGLang versions answer only the old route
        return ("/server_info", "/get_server_info", "/version")
