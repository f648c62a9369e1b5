"""Metric definitions as pure functions (see docs/metrics.md for the prose).

Inputs are raw timelines (:class:`~perfgate.records.RawRequest`) and their
parsed streams; outputs are :class:`~perfgate.results.RequestRecord` per
request and a :class:`~perfgate.results.Summary` per trial. Nothing here does
I/O or reads a clock, so every definition can be checked on hand-built
timelines with known truth.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from .records import ErrorKind, ParsedStream, RawRequest
from .results import ClientHealth, RequestRecord, Summary, TokenSource

STATS = ("mean", "std", "p50", "p90", "p95", "p99", "min", "max")
# Strongest first: the engine's own counts, then approximations.
_SOURCE_RANK: dict[str, int] = {"usage": 0, "token_ids": 1, "tokenizer": 2, "chunks": 3}


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """mean, sample std (ddof=1; 0 for one value), linear-interpolated percentiles, min, max."""
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


def _output_tokens(parsed: ParsedStream, count_tokens: Callable[[str], int] | None) -> tuple[int | None, TokenSource | None]:
    if parsed.completion_tokens is not None:
        return int(parsed.completion_tokens), "usage"
    if parsed.events and all(e.n_tokens is not None for e in parsed.events):
        return sum(e.n_tokens for e in parsed.events), "token_ids"  # type: ignore[misc]
    if count_tokens is not None and parsed.events:
        return count_tokens("".join(e.text for e in parsed.events)), "tokenizer"
    if parsed.events:
        return len(parsed.events), "chunks"
    return None, None


def _classify(raw: RawRequest, parsed: ParsedStream | None) -> tuple[str | None, str]:
    """The request's error class (None = success) and a short detail."""
    if raw.error is not None:
        return raw.error.value, raw.error_detail
    if raw.status != 200:
        return ErrorKind.PROTOCOL.value, f"HTTP {raw.status}"
    if parsed is None:
        return ErrorKind.PROTOCOL.value, "empty response body"
    started = bool(parsed.events)
    if parsed.error:
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
    """Per-request metrics from one raw timeline.

    TTFT = first token event − sent_at; E2E = done_at − sent_at; ITL = gaps
    between consecutive token events; TPOT = (E2E − TTFT) / (output_tokens − 1).
    """
    error, detail = _classify(raw, parsed)
    events = parsed.events if parsed else []
    ms = 1000.0
    ttft = (events[0].t - raw.sent_at) * ms if events else None
    e2e = (raw.done_at - raw.sent_at) * ms if raw.done_at is not None else None
    itl = [(b.t - a.t) * ms for a, b in zip(events, events[1:])]
    per_chunk = [e.n_tokens for e in events] if events and all(e.n_tokens is not None for e in events) else []
    out_tokens, source = _output_tokens(parsed, count_tokens) if parsed else (None, None)
    tpot = None
    if ttft is not None and e2e is not None and out_tokens is not None and out_tokens > 1:
        tpot = (e2e - ttft) / (out_tokens - 1)
    return RequestRecord(
        index=raw.index,
        scheduled_at_s=(raw.scheduled_at - run_start) if raw.scheduled_at is not None else None,
        sent_at_s=raw.sent_at - run_start,
        ttft_ms=ttft, e2e_ms=e2e, tpot_ms=tpot, itl_ms=itl, tokens_per_chunk=per_chunk,
        prompt_tokens=parsed.prompt_tokens if parsed else None,
        output_tokens=out_tokens, output_tokens_source=source, chunks=len(events),
        error=error, error_detail=detail[:300],
        schedule_lag_ms=(raw.sent_at - raw.scheduled_at) * ms if raw.scheduled_at is not None else None,
    )


def per_token_itl(record: RequestRecord) -> list[float]:
    """ITL per token: a gap before a chunk of k tokens counts as k gaps of gap/k.

    Without per-chunk token counts this falls back to the per-chunk gaps.
    """
    if not record.tokens_per_chunk or len(record.tokens_per_chunk) != len(record.itl_ms) + 1:
        return list(record.itl_ms)
    out: list[float] = []
    for gap, k in zip(record.itl_ms, record.tokens_per_chunk[1:]):
        if k > 0:
            out.extend([gap / k] * k)
    return out


def _meets_slo(r: RequestRecord, slo_ttft_ms: float | None, slo_tpot_ms: float | None) -> bool:
    if slo_ttft_ms is not None and (r.ttft_ms is None or r.ttft_ms > slo_ttft_ms):
        return False
    if slo_tpot_ms is not None and r.tpot_ms is not None and r.tpot_ms > slo_tpot_ms:
        return False
    return True


def summarize(
    records: Sequence[RequestRecord],
    duration_s: float,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
) -> Summary:
    """Aggregate one trial. Latency metrics use successful requests only."""
    ok = [r for r in records if r.error is None]
    failed = len(records) - len(ok)
    m: dict[str, float | None] = {}

    def put(name: str, values: Sequence[float]) -> None:
        for stat, v in distribution(values).items():
            m[f"{name}.{stat}"] = v

    put("ttft_ms", [r.ttft_ms for r in ok if r.ttft_ms is not None])
    put("itl_ms", [g for r in ok for g in r.itl_ms])
    put("itl_per_token_ms", [g for r in ok for g in per_token_itl(r)])
    put("tpot_ms", [r.tpot_ms for r in ok if r.tpot_ms is not None])
    put("e2e_ms", [r.e2e_ms for r in ok if r.e2e_ms is not None])
    put("per_user_tps", [r.output_tokens / (r.e2e_ms / 1000.0) for r in ok if r.output_tokens and r.e2e_ms])
    out_tokens = sum(r.output_tokens or 0 for r in ok)
    in_tokens = sum(r.prompt_tokens or 0 for r in ok)
    d = duration_s if duration_s > 0 else float("nan")
    m["request_throughput"] = len(ok) / d if ok else 0.0
    m["output_throughput"] = out_tokens / d if ok else 0.0
    m["total_token_throughput"] = (out_tokens + in_tokens) / d if ok else 0.0
    m["goodput"] = sum(_meets_slo(r, slo_ttft_ms, slo_tpot_ms) for r in ok) / d if ok else 0.0
    m["error_rate"] = failed / len(records) if records else None
    sources = [r.output_tokens_source for r in ok if r.output_tokens_source]
    weakest = max(sources, key=_SOURCE_RANK.__getitem__) if sources else None
    return Summary(
        completed=len(ok), failed=failed, duration_s=duration_s, metrics=m,
        errors=dict(Counter(r.error for r in records if r.error)), output_tokens_source=weakest,
    )


def client_health(
    records: Sequence[RequestRecord],
    duration_s: float,
    requested_rate: float | None,
    loop_lag_ms: Sequence[float] | None,
    max_schedule_lag_ms: float = 10.0,
    max_loop_lag_ms: float = 10.0,
    min_rate_ratio: float = 0.9,
) -> ClientHealth:
    """Did the client keep up? If not, its latencies describe itself, not the engine.

    Client-bound when the p99 schedule lag or the p99 event-loop stall exceeds
    its threshold, or the achieved send rate falls below ``min_rate_ratio`` of
    the drawn schedule's rate. p99 rather than max: one stall on a busy 2-core
    box distorts one read, a p99 stall distorts the run.
    """
    loop = distribution(list(loop_lag_ms or []))
    lags = [r.schedule_lag_ms for r in records if r.schedule_lag_ms is not None]
    dist = distribution(lags)
    sends = sorted(r.sent_at_s for r in records)
    achieved = None
    if len(sends) > 1 and sends[-1] > sends[0]:
        achieved = (len(sends) - 1) / (sends[-1] - sends[0])
    # Judge the achieved rate against the drawn schedule, not the nominal rate:
    # a short Poisson schedule is itself faster or slower than nominal by chance.
    sched = sorted(r.scheduled_at_s for r in records if r.scheduled_at_s is not None)
    scheduled_rate = (len(sched) - 1) / (sched[-1] - sched[0]) if len(sched) > 1 and sched[-1] > sched[0] else None
    reasons = []
    if dist["p99"] is not None and dist["p99"] > max_schedule_lag_ms:
        reasons.append(f"p99 schedule lag {dist['p99']:.1f} ms > {max_schedule_lag_ms:g} ms")
    if loop["p99"] is not None and loop["p99"] > max_loop_lag_ms:
        reasons.append(f"p99 event-loop stall {loop['p99']:.1f} ms > {max_loop_lag_ms:g} ms")
    if scheduled_rate and achieved is not None and achieved / scheduled_rate < min_rate_ratio:
        reasons.append(f"achieved {achieved:.2f} req/s of {scheduled_rate:.2f} scheduled")
    return ClientHealth(
        schedule_lag_ms_p50=dist["p50"], schedule_lag_ms_p99=dist["p99"], schedule_lag_ms_max=dist["max"],
        requested_rate=requested_rate, achieved_rate=achieved,
        loop_lag_ms_p99=loop["p99"], loop_lag_ms_max=loop["max"],
        client_bound=bool(reasons), reason="; ".join(reasons) or None,
    )
