"""Did the engine deliver the workload that was asked? Checked per trial, after the window.

A throughput figure means nothing if the engine generated fewer tokens than
asked (it ignored ``ignore_eos`` and stopped early: higher tokens/s, same
fingerprint) or saw other prompts than intended; and an ITL figure is wrong
when several SSE events land in one read (a zero gap, then an inflated one).
A trial that fails a check gets status ``workload_not_delivered`` with the
reason, the way a client-bound trial does. Definitions: docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from perfgate.measure.records import ParsedStream
from perfgate.schema.result import Delivery, RequestRecord, Workload

EXACT_SOURCES = ("usage", "token_ids")
"""Output counts that are the engine's own: checked exactly."""
COUNTED_SOURCES = ("tokenizer",)
"""Output counts perfgate made from the returned text (the endpoint's /tokenize or the local tokenizer): checked
within ``retokenized_tolerance``, since re-encoding decoded text can merge or split a token at the seams."""
RETOKENIZED_TOLERANCE = 0.10
"""A re-counted output may differ from ``max_tokens`` by this fraction and still count as delivered."""


def coalesced_events(parsed: ParsedStream | None) -> int:
    """Token events stamped with the same read as the event before them (several events in one read)."""
    if parsed is None:
        return 0
    ev = parsed.events
    return sum(1 for a, b in zip(ev, ev[1:]) if b.t == a.t)


def check_delivery(records: Sequence[RequestRecord], workload: Workload, *, per_request: bool = False,
                   pool_exhausted: bool = False, prompt_tolerance: float = 0.02,
                   max_coalesced_fraction: float = 0.5,
                   retokenized_tolerance: float = RETOKENIZED_TOLERANCE) -> Delivery:
    """Check every completed request against what it asked.

    ``per_request``: each request's ``requested_*`` fields say what it asked
    (shaped workloads; a None prompt count is not checked); otherwise every
    request asked the workload's ``prompt_tokens`` and ``max_tokens``.

    * outputs: with ``ignore_eos`` asked, the engine's own output count must equal ``max_tokens``; one counted
      from the returned text must be within ``retokenized_tolerance`` of it; one only counted in chunks
      (nothing could count it) leaves the trial **unverified**, which is not delivered either;
    * prompts: ``usage.prompt_tokens`` within ``prompt_tolerance`` × asked (relative) of the asked count; a
      prompt count perfgate made itself (``prompt_tokens_source`` "tokenizer": no usage) is not the engine's
      and is counted in ``prompt_counted``, not checked;
    * coalesced events: at most ``max_coalesced_fraction`` of all token gaps;
    * a duration run must not run out of prepared requests before its end.
    """
    d = Delivery()
    for r in records:
        if r.error is not None:
            continue
        d.checked_requests += 1
        d.coalesced_events += r.coalesced_events
        d.token_gaps += max(0, r.chunks - 1)
        asked_out = r.requested_max_tokens if per_request and r.requested_max_tokens else workload.max_tokens
        if workload.ignore_eos:
            if r.output_tokens_source in EXACT_SOURCES:
                if r.output_tokens != asked_out:
                    d.short_outputs += 1
            elif r.output_tokens_source in COUNTED_SOURCES and r.output_tokens is not None:
                d.output_retokenized += 1
                if abs(r.output_tokens - asked_out) > retokenized_tolerance * asked_out:
                    d.short_outputs += 1
            else:
                d.output_unchecked += 1
        asked_in = r.requested_prompt_tokens if per_request else workload.prompt_tokens
        if r.prompt_tokens is not None and r.prompt_tokens_source == "tokenizer":
            d.prompt_counted += 1
        elif asked_in is None or r.prompt_tokens is None:
            d.prompt_unchecked += 1
        elif abs(r.prompt_tokens - asked_in) > prompt_tolerance * asked_in:
            d.prompt_mismatches += 1
    d.pool_exhausted = pool_exhausted
    reasons = []
    if d.short_outputs:
        how = (f"; {d.output_retokenized} counted from the returned text, the endpoint sent no usage"
               if d.output_retokenized else "")
        reasons.append(f"{d.short_outputs} of {d.checked_requests} requests generated other than max_tokens "
                       f"with ignore_eos asked (the engine stopped early or ignored ignore_eos{how})")
    d.unverified = bool(d.output_unchecked)
    if d.unverified:
        reasons.append(f"delivery unverified: {d.output_unchecked} of {d.checked_requests} requests' outputs could "
                       "only be counted in stream chunks (no usage, no token_ids, no /tokenize or local tokenizer to "
                       "count the text; give --tokenizer DIR or serve /tokenize)")
    if d.prompt_mismatches:
        reasons.append(f"{d.prompt_mismatches} of {d.checked_requests} requests' prompt tokens were not within "
                       f"{prompt_tolerance:.0%} of the asked length")
    if d.token_gaps and d.coalesced_events / d.token_gaps > max_coalesced_fraction:
        reasons.append(f"{d.coalesced_events} of {d.token_gaps} token events arrived in one read with the previous "
                       f"(> {max_coalesced_fraction:.0%}: ITL gaps are zero, then inflated)")
    if pool_exhausted:
        reasons.append("the duration run ran out of prepared requests before its end (raise num_requests)")
    d.delivered = not reasons
    d.reason = "; ".join(reasons) or None
    return d
