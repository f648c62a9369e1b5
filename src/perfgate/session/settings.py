"""What the session was asked to do (from pytest options or the CLI), and what that makes of a case."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from perfgate.config.matrix import Case, EngineConfig, ModelSpec
from perfgate.engines.endpoint import EndpointOptions
from perfgate.schema.result import Result


@dataclass(frozen=True)
class Settings:
    """What the session was asked to do (from pytest options or the CLI)."""

    results_dir: Path
    cache_dir: Path
    baselines_dir: Path
    machine: str | None  # None: unnamed, compares with no stored baseline (measure.environment.machine_name)
    trials: int | None = None  # override every scenario's trial count
    update_baselines: bool = False
    baseline_version: str | None = None  # compare with another engine version's stored baseline
    allow_env_mismatch: bool = False
    strict: bool = False  # a case that compared nothing fails
    compare_to: EngineConfig | None = None  # live A/B: the reference engine, booted in this session
    compare_model: ModelSpec | None = None  # live A/B: the reference's model when it differs (a model change)
    time_budget_s: float | None = None  # per live comparison
    boots_per_side: int = 1  # live A/B: engine boots per side
    progress: Callable[[str], None] | None = None  # install/boot progress lines (None: the real stderr)
    on_result: Callable[[Result], None] | None = None  # each trial's result before it is written (plugin hooks)
    endpoint_model: str | None = None  # the model name an external endpoint serves (else found from /v1/models)
    endpoint_auth_env: str | None = None  # variable holding the endpoint's token (else $PERFGATE_ENDPOINT_TOKEN)
    endpoint_options: EndpointOptions | None = None  # server routes' base, extra headers, throttle policy
    request_timeout_s: float | None = None  # override every scenario's timeout_s (per request)
    trial_timeout_s: float | None = None  # override every scenario's trial_timeout_s (per trial)
    boot_timeout_s: float | None = None  # override every engine's boot_timeout_s
    history: str | None = None  # the history store's URL (session.history.history_url); None: no history kept

    @property
    def live(self) -> bool:
        """A live A/B session: the pool holds two engines."""
        return self.compare_to is not None or self.compare_model is not None

    def reference_for(self, case: Case) -> tuple[EngineConfig, ModelSpec] | None:
        """The live A/B's side A for ``case``: ``compare_to`` and/or ``compare_model``, the case's own
        engine or model where one is not given (a model change on one engine; an engine change on one
        model). None: no live A/B, the case is judged against stored baselines."""
        if not self.live:
            return None
        return self.compare_to or case.engine, self.compare_model or case.model

    def booted(self, engine: EngineConfig) -> EngineConfig:
        """``engine`` with ``--perf-boot-timeout`` applied (every engine the session boots, A included)."""
        return engine if self.boot_timeout_s is None else replace(engine, boot_timeout_s=self.boot_timeout_s)

    def trials_for(self, case: Case) -> int:
        return self.trials or case.scenario.spec.trial.trials

    def with_timeouts(self, case: Case) -> Case:
        """``case`` with the session's timeout overrides applied (per request, per trial, boot)."""
        update = {k: v for k, v in (("timeout_s", self.request_timeout_s), ("trial_timeout_s", self.trial_timeout_s))
                  if v is not None}
        if update:
            scenario = case.scenario
            case = replace(case, scenario=replace(scenario, spec=scenario.spec.model_copy(update=update)))
        return replace(case, engine=self.booted(case.engine))
