"""Terminal text: one load run laid out like `vllm bench serve`'s printout, a live A/B's table, the run's summary.

People read load results in that shape; the figures are perfgate's own
(docs/metrics.md): percentiles from the trial summary, TPOT excluding the
first token, ITL per streamed chunk, E2E to the last byte. The session and
``perfgate compare`` print the A/B table and the summary section from here,
so the words are written once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from perfgate.schema.result import Result
from perfgate.schema.status import NOT_COMPARED, CaseStatus, StatusCounts
from perfgate.schema.verdict import Judgement

_W = 50
_SECTIONS = (
    ("ttft_ms", "TTFT", "Time to First Token"),
    ("tpot_ms", "TPOT", "Time per Output Token (excl. 1st token)"),
    ("itl_ms", "ITL", "Inter-token Latency"),
    ("e2e_ms", "E2E", "End-to-end Latency"),
)


def _row(label: str, value) -> str:
    if value is None:
        text = "n/a"
    elif isinstance(value, float):
        text = f"{value:.2f}"
    else:
        text = str(value)
    return f"{label:<40} {text}"


def load_table(result: Result, percentiles: tuple[float, ...] = (99.0,)) -> str:
    """Rows: counts, duration, tokens, throughputs, goodput, errors, then mean/median/pNN per latency metric."""
    s, w, h = result.summary, result.workload, result.client_health
    m = s.metrics if s else {}
    ok = [r for r in result.requests if r.error is None]
    lines = [" Serving Benchmark Result ".center(_W, "=")]
    lines.append(_row("Status:", result.status + (f" ({result.failure_reason})" if result.failure_reason else "")))
    lines.append(_row("Successful requests:", s.completed if s else 0))
    lines.append(_row("Failed requests:", s.failed if s else 0))
    for kind, count in sorted((s.errors if s else {}).items()):
        lines.append(_row(f"  {kind}:", count))
    if s and (s.metrics.get("throttled_rate") or s.metrics.get("throttled_retries")):
        lines.append(_row("Throttled (429/503) rate:", f"{s.metrics['throttled_rate']:.1%}"
                          + (f" ({s.metrics['throttled_retries']:.0f} retried)" if s.metrics.get("throttled_retries")
                             else "")))
    if w.concurrency is not None:
        lines.append(_row("Concurrency (closed loop):", w.concurrency))
    else:
        lines.append(_row("Request rate (req/s, open loop):", w.request_rate))
        if w.max_concurrency:
            lines.append(_row("Maximum request concurrency:", w.max_concurrency))
    lines.append(_row("Benchmark duration (s):", s.duration_s if s else None))
    lines.append(_row("Total input tokens:", sum(r.prompt_tokens or 0 for r in ok)))
    lines.append(_row("Total generated tokens:", sum(r.output_tokens or 0 for r in ok)))
    lines.append(_row("Request throughput (req/s):", m.get("request_throughput")))
    lines.append(_row("Output token throughput (tok/s):", m.get("output_throughput")))
    lines.append(_row("Total token throughput (tok/s):", m.get("total_token_throughput")))
    if w.slo_ttft_ms is not None or w.slo_tpot_ms is not None:
        lines.append(_row("Request goodput (req/s):", m.get("goodput")))
    for key, short, header in _SECTIONS:
        lines.append(f"{header:-^{_W}}")
        lines.append(_row(f"Mean {short} (ms):", m.get(f"{key}.mean")))
        lines.append(_row(f"Median {short} (ms):", m.get(f"{key}.p50")))
        for p in percentiles:
            word = str(int(p)) if int(p) == p else str(p)
            lines.append(_row(f"P{word} {short} (ms):", m.get(f"{key}.p{word}")))
    if h is not None or result.client is not None:
        lines.append(f"{'Client':-^{_W}}")
        c = result.client
        if c is not None:
            lines.append(_row("Event loop / HTTP / processes:", f"{c.event_loop} / {c.http_client} / {c.workers}"))
        if h is not None:
            tokens = sum(r.output_tokens or 0 for r in ok)
            if h.client_cpu_s is not None and tokens:
                lines.append(_row("Client CPU per token, window (us):", h.client_cpu_s / tokens * 1e6))
            lines.append(_row("Event-loop stall p99 (ms):", h.loop_lag_ms_p99))
            if h.schedule_lag_ms_p99 is not None:
                lines.append(_row("Schedule lag p99 (ms):", h.schedule_lag_ms_p99))
            for why in h.earlier_attempts:
                lines.append(f"Re-run, an earlier attempt was {why}")
    lines.append("=" * _W)
    return "\n".join(lines)


# -- the pytest session's text: a live A/B's table and the summary section ------------------------------------

_AB_SHOWN_OBSERVED = ("tpot_ms.mean", "request_throughput")  # observe-only, but what people look at in an A/B


def ab_table(judgement: Judgement) -> list[str]:
    """The live A/B's answer: its outcome, blocks and detectable effect, then per metric the paired estimate of
    B / A (the centre of the blocks' paired log ratios) with its interval. Trial medians are not shown: a ratio
    of medians is another number for the same question, and not a statistic of the pairing."""
    blocks = max((v.n_current for v in judgement.verdicts), default=0)
    head = f"outcome {(judgement.outcome or 'not judged').upper()} after {blocks} paired blocks"
    if judgement.primary_metric:
        head += f"; primary {judgement.primary_metric}"
    if judgement.detectable_pct is not None:
        head += f", detectable here {judgement.detectable_pct:.1f}%"
    rows = [head, f"{'metric':24s} {'B vs A':>8s}  {'interval':18s} {'level':>7s}  verdict"]
    for v in judgement.verdicts:
        if v.observe_only and v.metric not in _AB_SHOWN_OBSERVED:
            continue
        interval = (f"[{(v.ci_low - 1) * 100:+.1f}%, {(v.ci_high - 1) * 100:+.1f}%]"
                    if v.ci_low is not None and v.ci_high is not None else "")
        change = f"{v.change_pct:+.1f}%" if v.change_pct is not None else "-"
        level = f"{v.level * 100:.2f}%" if v.level is not None else ""
        tag = v.verdict.upper() if v.verdict == "regression" and v.judged else v.verdict
        rows.append(f"{v.metric:24s} {change:>8s}  {interval:18s} {level:>7s}  {tag}"
                    + (" (primary)" if v.metric == judgement.primary_metric else "")
                    + (" (shown, not gated)" if v.observe_only else ""))
    rows.append("B vs A: the paired estimate of B / A over the blocks (+ = B's value larger), "
                "interval at the look's level")
    return rows


@dataclass(frozen=True)
class CaseLines:
    """One case in the summary: its status, id and the lines under it."""

    status: CaseStatus
    case_id: str
    lines: tuple[str, ...]


def status_label(status: CaseStatus) -> str:
    return "NOT COMPARED" if status in NOT_COMPARED else status.upper()


def session_summary(cases: Sequence[CaseLines], skipped: Sequence[str], counts: StatusCounts, *,
                    machine: str | None, strict: bool, results_dir: Path, report_paths: Sequence[Path] = (),
                    report_error: str | None = None, history: Sequence[str] = ()) -> list[str]:
    """The ``perfgate`` section of the terminal summary: each case with its lines, skips grouped by reason,
    the history's lines (one per new change point, or the store's fault), the counts line, where the results
    and the report are."""
    lines = []
    for c in cases:
        lines.append(f"{status_label(c.status):13s} {c.case_id}")
        lines.extend(f"    {line}" for line in c.lines)
    lines.extend(f"{'SKIPPED':13s} {n} case(s): {reason}" for reason, n in Counter(skipped).items())
    lines.extend(history)
    shown = repr(machine) if machine else "(unnamed)"
    lines.append(f"{counts.cases} cases on machine {shown}: {counts.compared} compared "
                 f"({counts.regression} regressed), {counts.inconclusive} inconclusive, "
                 f"{counts.not_compared} NOT COMPARED, {counts.failed} failed"
                 + (f", {counts.baseline_written} baselines written" if counts.baseline_written else "")
                 + (f", {counts.skipped} skipped" if counts.skipped else ""))
    if counts.not_compared and not strict:
        lines.append("    cases that compared nothing pass; --perf-strict fails them")
    if counts.inconclusive and not strict:
        lines.append("    inconclusive cases (compared, nothing decided) pass; --perf-strict fails them")
    lines.append(f"results and server logs: {results_dir}")
    if report_paths:
        lines.append(f"report: {report_paths[0]} (summary: {report_paths[1]})")
    if report_error:
        lines.append(report_error)
    return lines
