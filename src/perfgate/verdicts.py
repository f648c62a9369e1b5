"""Judging a case's trials against the stored baseline (filled in with the baseline store)."""

from __future__ import annotations


def judge(session, outcome) -> None:
    """Placeholder until the baseline store lands: record per-trial headline figures only."""
    for r in outcome.results:
        if r.summary is not None:
            m = r.summary.metrics
            outcome.verdict_lines.append(
                f"trial {r.trial}: ttft p50 {m.get('ttft_ms.p50')} ms, tpot mean {m.get('tpot_ms.mean')} ms, "
                f"output {m.get('output_throughput')} tok/s"
            )
