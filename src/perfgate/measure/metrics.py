"""Metric definitions as pure functions (see docs/metrics.md for the prose).

Inputs are raw timelines (:class:`~perfgate.measure.records.RawRequest`) and their
parsed streams; outputs are :class:`~perfgate.schema.result.RequestRecord` per
request, a :class:`~perfgate.schema.result.Summary` per trial and a
:class:`~perfgate.schema.result.ClientHealth` verdict. Nothing here does I/O or
reads a clock, so every definition can be checked on hand-built timelines
with known truth.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.client import HTTPException

import numpy as np

from perfgate.measure.records import (
    ERROR_CLASS,
    THROTTLED_KINDS,
    ErrorKind,
    ParsedStream,
    status_kind,
    RawRequest,
)
from perfgate.measure.sse import ERROR_EVENT_PREFIX
from perfgate.schema.result import ClientHealth, RequestRecord, Summary, TokenSource
from perfgate.schema.status import FaultClass

STATS = ("mean", "std", "p50", "p90", "p95", "p99", "min", "max")
LATENCY_METRICS = ("ttft_ms", "itl_ms", "itl_per_token_ms", "tpot_ms", "e2e_ms", "per_user_tps")
"""Per-trial metrics reported as ``<name>.<stat>`` for every stat in :data:`STATS`."""
# Strongest first: the engine's own counts, then approximations.
_SOURCE_RANK: dict[str, int] = {"usage": 0, "token_ids": 1, "tokenizer": 2, "chunks": 3}
_MS = 1000.0


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """mean, sample std (ddof=1; 0 for one value), linear-interpolated percentiles, min, max.

    All None for no values: an empty distribution has no figures, and 0 would
    read as a (very good) measurement.
    """
    if len(values) == 0:
        return dict.fromkeys(STATS)
    a = np.asarray(values, dtype=float)
    p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99])
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "p50": float(p50), "p90": float(p90), "p95": float(p95), "p99": float(p99),
        "min": float(a.min()), "max": float(a.max()),
    }


def geometric_mean(values: Sequence[float]) -> float | None:
    """exp(mean(log x)) of the positive values; None when there are none.

    The statistic a live A/B gates TTFT on (perfgate.judge.sequential): it uses
    every request of the trial, where a p50 of a few dozen rests on the middle
    one or two, and a slow outlier moves it by its log, not its size.
    """
    a = np.asarray([v for v in values if v > 0], dtype=float)
    return float(np.exp(np.log(a).mean())) if a.size else None


def _output_tokens(parsed: ParsedStream, count_tokens: Callable[[str], int] | None) -> tuple[int | None, TokenSource | None]:
    """The output-token count from the strongest source available, and that source."""
    if parsed.completion_tokens is not None:
        return int(parsed.completion_tokens), "usage"
    if parsed.events and all(e.n_tokens is not None for e in parsed.events):
        return sum(e.n_tokens for e in parsed.events), "token_ids"  # type: ignore[misc]
    if count_tokens is not None and parsed.events:
        try:
            return count_tokens("".join(e.text for e in parsed.events)), "tokenizer"
        except (LookupError, OSError, ValueError, HTTPException):  # the counter failed: chunks, marked so
            pass
    if parsed.events:
        return len(parsed.events), "chunks"
    return None, None


def not_event_stream(raw: RawRequest) -> str:
    """What a streamed request got instead of an event stream: its Content-Type, status and first bytes."""
    first = b"".join(data for _, data in raw.chunks)[:80]
    return f"expected text/event-stream, got {raw.content_type.split(';')[0]} ({raw.status}): {first!r}"


def _classify(raw: RawRequest, parsed: ParsedStream | None) -> tuple[str | None, str]:
    """The request's error class (None = success) and a short detail.

    The client's own verdict (``raw.error``) wins; otherwise the status, then
    the stream: once a 200 stream has produced a token or sent an error event
    it has started, and a failure is ``mid_stream``; a 200 body that never
    became a usable stream is ``protocol``.
    """
    if raw.error is not None:
        return raw.error.value, raw.error_detail
    if raw.status != 200:
        detail = f"HTTP {raw.status}" if raw.status is not None else "no HTTP response"
        return status_kind(raw.status).value, (f"{detail}: {raw.error_detail}" if raw.error_detail else detail)
    if raw.content_type is not None and not raw.content_type.startswith("text/event-stream"):
        return ErrorKind.PROTOCOL.value, not_event_stream(raw)
    if parsed is None:
        return ErrorKind.PROTOCOL.value, "empty response body"
    started = bool(parsed.events)
    if parsed.error:
        started = started or parsed.error.startswith(ERROR_EVENT_PREFIX)
        return (ErrorKind.MID_STREAM if started else ErrorKind.PROTOCOL).value, parsed.error
    if not parsed.saw_done:
        kind = ErrorKind.MID_STREAM if started else ErrorKind.PROTOCOL
        return kind.value, "stream ended without data: [DONE]"
    if not started:
        return ErrorKind.PROTOCOL.value, "stream finished without generating any token"
    return None, ""


def request_record(
    raw: RawRequest,
    parsed: ParsedStream | None,
    run_start: float,
    count_tokens: Callable[[str], int] | None = None,
) -> RequestRecord:
    """Per-request metrics from one raw timeline (``parsed`` None: no body).

    TTFT = first token event − sent_at; E2E = done_at − sent_at; ITL = gaps
    between consecutive token events; TPOT = (E2E − TTFT) / (output_tokens − 1).
    A failed request gets ``error`` and keeps whatever timings exist, so a
    report can show how far it got.
    """
    error, detail = _classify(raw, parsed)
    events = parsed.events if parsed else []
    ttft = (events[0].t - raw.sent_at) * _MS if events else None
    e2e = (raw.done_at - raw.sent_at) * _MS if raw.done_at is not None else None
    itl = [(b.t - a.t) * _MS for a, b in zip(events, events[1:])]
    per_chunk = [e.n_tokens for e in events] if events and all(e.n_tokens is not None for e in events) else []
    out_tokens, source = _output_tokens(parsed, count_tokens) if parsed else (None, None)
    tpot = None
    if ttft is not None and e2e is not None and out_tokens is not None and out_tokens > 1:
        tpot = (e2e - ttft) / (out_tokens - 1)
    return RequestRecord(
        index=raw.index,
        scheduled_at_s=(raw.scheduled_at - run_start) if raw.scheduled_at is not None else None,
        sent_at_s=raw.sent_at - run_start,
        ttft_ms=ttft, e2e_ms=e2e, tpot_ms=tpot, itl_ms=itl, tokens_per_chunk=per_chunk,  # type: ignore[arg-type]
        prompt_tokens=parsed.prompt_tokens if parsed else None,
        prompt_tokens_source="usage" if parsed is not None and parsed.prompt_tokens is not None else None,
        output_tokens=out_tokens, output_tokens_source=source, chunks=len(events),
        error=error, error_detail=detail[:300],
        schedule_lag_ms=(raw.sent_at - raw.scheduled_at) * _MS if raw.scheduled_at is not None else None,
        throttled_attempts=raw.throttled_attempts,
    )


def per_token_itl(record: RequestRecord) -> list[float]:
    """ITL per token: a gap before a chunk of k tokens counts as k gaps of gap/k.

    Why: with multi-token chunks (speculative decoding, stream intervals) the
    per-chunk gap overstates the time per token, and a chunk of 4 tokens
    should weigh 4 times in a per-token percentile. Without per-chunk token
    counts this falls back to the per-chunk gaps.
    """
    if not record.tokens_per_chunk or len(record.tokens_per_chunk) != len(record.itl_ms) + 1:
        return list(record.itl_ms)
    out: list[float] = []
    for gap, k in zip(record.itl_ms, record.tokens_per_chunk[1:]):
        if k > 0:
            out.extend([gap / k] * k)
    return out


def per_user_tps(record: RequestRecord) -> float | None:
    """output_tokens / (e2e_ms / 1000): the average rate one user saw, TTFT included."""
    if not record.output_tokens or not record.e2e_ms or record.e2e_ms <= 0:
        return None
    return record.output_tokens / (record.e2e_ms / _MS)


def meets_slo(record: RequestRecord, slo_ttft_ms: float | None = None, slo_tpot_ms: float | None = None,
              slo_e2e_ms: float | None = None) -> bool:
    """Whether a request meets every SLO given (``<=``); a request with no TPOT (one token) meets any TPOT SLO."""
    if slo_ttft_ms is not None and (record.ttft_ms is None or record.ttft_ms > slo_ttft_ms):
        return False
    if slo_tpot_ms is not None and record.tpot_ms is not None and record.tpot_ms > slo_tpot_ms:
        return False
    if slo_e2e_ms is not None and (record.e2e_ms is None or record.e2e_ms > slo_e2e_ms):
        return False
    return True


def summarize(
    records: Sequence[RequestRecord],
    duration_s: float,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
    slo_e2e_ms: float | None = None,
) -> Summary:
    """Aggregate one trial's measured (non-warm-up) requests.

    Latency metrics use successful requests only: a failed request's partial
    timings describe the failure, not the engine's speed. Rates divide by
    ``duration_s``; they are None when the duration is not positive.
    """
    ok = [r for r in records if r.error is None]
    failed = len(records) - len(ok)
    m: dict[str, float | None] = {}

    def put(name: str, values: Sequence[float]) -> None:
        for stat, v in distribution(values).items():
            m[f"{name}.{stat}"] = v

    put("ttft_ms", [r.ttft_ms for r in ok if r.ttft_ms is not None])
    m["ttft_ms.gmean"] = geometric_mean([r.ttft_ms for r in ok if r.ttft_ms is not None])
    put("itl_ms", [g for r in ok for g in r.itl_ms])
    put("itl_per_token_ms", [g for r in ok for g in per_token_itl(r)])
    put("tpot_ms", [r.tpot_ms for r in ok if r.tpot_ms is not None])
    put("e2e_ms", [r.e2e_ms for r in ok if r.e2e_ms is not None])
    put("per_user_tps", [v for r in ok if (v := per_user_tps(r)) is not None])

    out_tokens = sum(r.output_tokens or 0 for r in ok)
    prompt_known = all(r.prompt_tokens is not None for r in ok)
    in_tokens = sum(r.prompt_tokens or 0 for r in ok)
    good = sum(meets_slo(r, slo_ttft_ms, slo_tpot_ms, slo_e2e_ms) for r in ok)
    if duration_s > 0:
        m["request_throughput"] = len(ok) / duration_s
        m["output_throughput"] = out_tokens / duration_s
        # Prompt tokens from usage, else the sent prompt's count: a request with neither would undercount the sum.
        m["total_token_throughput"] = (out_tokens + in_tokens) / duration_s if prompt_known else None
        m["goodput"] = good / duration_s
    else:
        m.update(dict.fromkeys(("request_throughput", "output_throughput", "total_token_throughput", "goodput")))
    m["error_rate"] = failed / len(records) if records else None
    throttled = sum(r.error in THROTTLED_KINDS for r in records)
    m["throttled_rate"] = throttled / len(records) if records else None  # 429/503: refused for load
    m["success_rate"] = len(ok) / len(records) if records else None
    m["throttled_retries"] = float(sum(r.throttled_attempts for r in records))

    sources = [r.output_tokens_source for r in ok if r.output_tokens_source]
    weakest = max(sources, key=_SOURCE_RANK.__getitem__) if sources else None
    return Summary(
        completed=len(ok), failed=failed, duration_s=duration_s, metrics=m,
        errors=dict(Counter(r.error for r in records if r.error)), output_tokens_source=weakest,
    )


def _send_rate(times: Sequence[float]) -> float | None:
    """(n − 1) / span: n sends over a span hold n − 1 intervals."""
    ts = sorted(times)
    if len(ts) < 2 or ts[-1] <= ts[0]:
        return None
    return (len(ts) - 1) / (ts[-1] - ts[0])


MAX_SCHEDULE_LAG_MS = 10.0
"""p99 lag of actual sends behind the open-loop schedule beyond which the client, not the engine, set the pace."""
MAX_LOOP_STALL_MS = 10.0
"""p99 event-loop stall beyond which timestamps carry the client's own delay (a TTFT of ~20 ms would be 50% off)."""
MIN_RATE_RATIO = 0.9
"""Achieved send rate below this fraction of the scheduled rate: the client could not deliver the asked load."""


def client_health(
    records: Sequence[RequestRecord],
    duration_s: float,
    requested_rate: float | None,
    loop_lag_ms: Sequence[float] | float | None,
    max_schedule_lag_ms: float = MAX_SCHEDULE_LAG_MS,
    max_loop_lag_ms: float = MAX_LOOP_STALL_MS,
    min_rate_ratio: float = MIN_RATE_RATIO,
) -> ClientHealth:
    """Did the client keep up? If not, its latencies describe itself, not the engine.

    ``loop_lag_ms`` is the event-loop probe's samples (or one figure, taken as
    its only sample). Client-bound when the p99 schedule lag or the p99
    event-loop stall exceeds its threshold, or the achieved send rate falls
    below ``min_rate_ratio`` of the drawn schedule's rate (the requested rate
    when records carry no schedule). p99 rather than max: one stall on a busy
    2-core box distorts one read, a p99 stall distorts the run. ``duration_s``
    is accepted for symmetry with :func:`summarize` and not used.
    """
    del duration_s
    samples = [float(loop_lag_ms)] if isinstance(loop_lag_ms, (int, float)) else list(loop_lag_ms or [])
    loop = distribution(samples)
    dist = distribution([r.schedule_lag_ms for r in records if r.schedule_lag_ms is not None])
    achieved = _send_rate([r.sent_at_s for r in records])
    # Judge the achieved rate against the drawn schedule, not the nominal rate:
    # a short Poisson schedule is itself faster or slower than nominal by chance.
    scheduled = _send_rate([r.scheduled_at_s for r in records if r.scheduled_at_s is not None])
    reasons = []
    if dist["p99"] is not None and dist["p99"] > max_schedule_lag_ms:
        reasons.append(f"p99 schedule lag {dist['p99']:.1f} ms > {max_schedule_lag_ms:g} ms")
    if loop["p99"] is not None and loop["p99"] > max_loop_lag_ms:
        reasons.append(f"p99 event-loop stall {loop['p99']:.1f} ms > {max_loop_lag_ms:g} ms")
    if achieved is not None:
        if scheduled:
            if achieved / scheduled < min_rate_ratio:
                reasons.append(f"achieved {achieved:.2f} req/s of {scheduled:.2f} scheduled")
        elif requested_rate and achieved / requested_rate < min_rate_ratio:
            reasons.append(f"achieved {achieved:.2f} req/s of {requested_rate:.2f} requested")
    return ClientHealth(
        schedule_lag_ms_p50=dist["p50"], schedule_lag_ms_p99=dist["p99"], schedule_lag_ms_max=dist["max"],
        requested_rate=requested_rate, achieved_rate=achieved,
        loop_lag_ms_p99=loop["p99"], loop_lag_ms_max=loop["max"],
        client_bound=bool(reasons), reason="; ".join(reasons) or None,
    )


def error_classes(errors: dict[str, int]) -> dict[FaultClass, int]:
    """Request error counts (by :class:`ErrorKind` value) grouped by fault class, most severe first."""
    out: dict[FaultClass, int] = {}
    for cls in FaultClass:
        n = sum(v for k, v in errors.items() if _fault_of(k) == cls)
        if n:
            out[cls] = n
    return out


def _fault_of(kind: str | None) -> FaultClass:
    return ERROR_CLASS.get(kind or "", FaultClass.SERVER_ERROR)


@dataclass(frozen=True)
class TrialFault:
    """Why a trial with failed requests is not a measurement: its fault class and what happened."""

    fault: FaultClass
    detail: str  # "all 8 requests failed (timeout 8); first: timeout: ..."

    @property
    def line(self) -> str:
        """The trial's ``failure_reason``: the fault class, then what happened."""
        return f"{self.fault}: {self.detail}"


THROTTLE_POLICIES = ("count", "retry", "fail")
"""What a 429/503 does to a trial: ``count`` it as ``throttled_rate`` (the default), ``retry`` it with backoff
(bounded, Retry-After honoured; what still fails is counted), or ``fail`` the trial as any failed request does."""


def trial_failure(records: Sequence[RequestRecord], throttle: str = "count") -> TrialFault | None:
    """The fault of a trial with failed requests, None when every request completed.

    A trial with any failed request is not a measurement: the latencies of the
    requests that survived a crash, a hang or a refusal describe the fault.
    Throttled requests (429/503) are the exception unless ``throttle`` is "fail":
    a deployment that sheds load is measured, its shedding counted as a rate, and
    a trial where nothing got through fails all the same.
    """
    failed = [r for r in records if r.error]
    if throttle != "fail" and len(failed) < len(records):
        failed = [r for r in failed if r.error not in THROTTLED_KINDS]
    if not failed:
        return None
    counts = Counter(r.error for r in failed if r.error)
    cls = next(iter(error_classes(dict(counts))))
    first = next(r for r in failed if _fault_of(r.error) == cls)
    n = f"all {len(failed)}" if len(failed) == len(records) else f"{len(failed)} of {len(records)}"
    kinds = ", ".join(f"{k} {v}" for k, v in counts.most_common())
    return TrialFault(cls, f"{n} requests failed ({kinds}); first: {first.error}: {first.error_detail[:160]}")
