"""Rendering: ReportData -> index.html (Jinja2, inline SVG) and summary.md."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import jinja2

from perfgate import __version__
from perfgate.report import charts
from perfgate.report.data import KEY_COLUMNS, CaseView, ReportData, gather
from perfgate.report.history_view import HistoryView, read_history
from perfgate.schema.files import write_text_atomic
from perfgate.schema.status import NOT_COMPARED, StatusGroup, status_group

MD_MAX_LINES = 60
MD_MAX_BYTES = 10_000
MD_HISTORY_LINES = 20
SWEEP_AXES = ("concurrency", "request_rate", "rate", "qps")

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("perfgate.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    trim_blocks=True, lstrip_blocks=True,
    finalize=lambda x: "—" if x is None else x,  # a missing value reads as a dash, never as "None"
)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{(x - 1) * 100:+.1f}%"


def _num(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"


_env.filters["pct"] = _pct
_env.filters["num"] = _num

LABEL = {
    "regression": "REGRESSION", "improvement": "improved", "no_change": "no change", "inconclusive": "inconclusive",
    "no_baseline": "NOT COMPARED: no baseline", "failed": "FAILED", "client_bound": "CLIENT-BOUND",
    "env_mismatch": "NOT COMPARED: env mismatch", "not_comparable": "NOT COMPARED: other machine",
    "reference": "reference (A)",
    "workload_not_delivered": "WORKLOAD NOT DELIVERED", "slo_violated": "SLO VIOLATED",
    "ok": "ok", "baseline_written": "baseline written", "not_judged": "not judged", "skipped": "SKIPPED",
}


def _case_charts(case: CaseView) -> list[tuple[str, str, str]]:
    """(name, caption, svg) for a case with numbers: latency distributions, then telemetry when recorded."""
    if not case.has_numbers:
        return []
    out: list[tuple[str, str, str | None]] = []
    live = case.live
    if live is not None:
        dropped = sum(1 for b in live.blocks if b.dropped)
        kept = len(live.blocks) - dropped
        why = {kind: sum(1 for b in live.blocks if b.dropped and kind in b.dropped)
               for kind in ("client-bound", "disturbed")}
        why_text = ", ".join(f"{n} {kind}" for kind, n in why.items() if n)
        out.append(("ab_blocks", f"{live.primary_metric}, B vs A per block ({kept} blocks"
                    + (f", {dropped} dropped and re-run" + (f": {why_text}" if why_text else "") if dropped else "")
                    + "), the paired estimate and its "
                    "interval at each look, the look's regression boundary",
                    charts.ab_blocks([(b.block, b.ratio, b.dropped is not None) for b in live.blocks if b.ratio],
                                     [(lk.blocks, lk.ratio, lk.ci_low, lk.ci_high, lk.boundary) for lk in live.looks],
                                     live.min_effect, live.direction == "lower")))
    ok = [r for r in case.results if r.status == "ok"]
    n_req = sum(1 for r in ok for q in r.requests if q.error is None)
    pooled = f"{n_req} requests of {len(ok)} trial{'s' if len(ok) != 1 else ''}"
    out += [
        ("ttft", f"TTFT distribution ({pooled})", charts.ecdf({"TTFT": case.samples("ttft_ms")}, "TTFT (ms)")),
        ("itl", f"ITL and TPOT distributions ({pooled})",
         charts.ecdf({"ITL (per chunk)": case.samples("itl_ms"), "TPOT": case.samples("tpot_ms")}, "ms")),
    ]
    with_tel = next((r for r in ok if r.telemetry), None)
    if with_tel is not None:
        tel = with_tel.telemetry
        trial = f"trial {with_tel.trial}"
        # The engine's processes' memory when recorded (older results: the whole device's).
        mem = "engine_memory_mib" if any(k.endswith(".engine_memory_mib") for k in tel) else "memory_used_mib"
        out.append(("gpu_mem", f"GPU memory {'of the engine' if mem.startswith('engine') else 'of the device'} "
                               f"over time ({trial})",
                    charts.timeseries({k.split(".")[0]: v for k, v in tel.items() if k.endswith("." + mem)},
                                      "GPU memory (MiB)")))
        out.append(("gpu_power", f"GPU power over time ({trial})",
                    charts.timeseries({k.split(".")[0]: v for k, v in tel.items() if k.endswith("power_w")}, "GPU power (W)")))
    return [(name, caption, svg) for name, caption, svg in out if svg]


def _sweep_charts(data: ReportData) -> list[tuple[str, str]]:
    families: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for c in data.cases:
        point = c.sweep_point()
        if not point or not c.has_numbers:
            continue
        family, params = point
        x_key = next((k for k in SWEEP_AXES if isinstance(params.get(k), float)), None)
        if x_key is None:
            continue
        rest = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items() if k != x_key)
        label = f"{c.engine} {c.version} {rest}".strip()
        tput = c.medians().get("output_throughput")
        if tput is not None:
            families.setdefault((f"{family} — {c.model} ({x_key})", x_key), {}).setdefault(label, []).append(
                (params[x_key], tput))
    return [(name, charts.sweep(pts, x_key.replace("_", " "), "output tok/s"))
            for (name, x_key), pts in sorted(families.items())]


def _saturation_charts(data: ReportData) -> list[tuple[object, str | None]]:
    """(saturation result, goodput/throughput-against-rate chart) per saturation scenario."""
    return [(s, charts.saturation([(p.rate, p.goodput, p.request_throughput, p.within_slo) for p in s.steps],
                                  s.max_sustained_rate)) for s in data.saturations]


def _ab_rows(group: list[CaseView]) -> list[dict]:
    """Per key metric: each member's median of trial values and its ratio to the first member.

    ``tag`` says better/worse/similar by the metric's direction and minimum effect; this is a
    comparison of medians, not a statistical verdict (the verdict tables are)."""
    from perfgate.judge.stats import policy_for  # late: pulls in scipy

    rows = []
    meds = [c.medians() for c in group]
    for key, name in KEY_COLUMNS:
        ref = meds[0].get(key)
        if all(m.get(key) is None for m in meds):
            continue
        policy = policy_for(key)
        cells = []
        for m in meds:
            value = m.get(key)
            ratio = value / ref if value is not None and ref else None
            tag = None
            if ratio is not None:
                change = ratio - 1.0
                if abs(change) <= max(policy.min_effect, 1e-9):
                    tag = "similar"
                else:
                    tag = "better" if (change < 0) == (policy.direction == "lower") else "worse"
            cells.append({"value": value, "ratio": ratio, "tag": tag})
        rows.append({"key": key, "name": name, "direction": policy.direction, "cells": cells})
    return rows


def live_answer(case: CaseView) -> str:
    """A live A/B's answer in one line: outcome, the primary metric's paired estimate and interval, blocks,
    detectable effect (e.g. ``no change: itl_per_token_ms.p50 +1.2% [-3.0%, +5.6%] (paired, 99.2%), 24 blocks``)."""
    v = case.verdict
    assert v is not None
    live = v.live
    primary = live.primary_metric if live else None
    mv = case.metric_verdicts().get(primary) if primary else None
    line = (v.outcome or "not judged").replace("_", " ")
    if mv is not None and mv.ratio is not None:
        line += f": {primary} {_pct(mv.ratio)}"
        if mv.ci_low is not None:
            line += f" [{_pct(mv.ci_low)}, {_pct(mv.ci_high)}]"
        line += " (paired estimate" + (f", {mv.level * 100:.2f}% interval)" if mv.level else ")")
        line += f", {mv.n_current} blocks"
    if live is not None and live.span_s is not None:
        line += f" in {live.span_s:.0f} s"
    if v.detectable_pct is not None:
        line += f", detectable {v.detectable_pct:.1f}%"
    return line


def render_html(data: ReportData, history: HistoryView | None = None) -> str:
    return _env.get_template("report.html.j2").render(
        history=history or HistoryView(),
        data=data, counts=data.counts(), key_columns=KEY_COLUMNS, label=LABEL, live_answer=live_answer,
        case_charts=[_case_charts(c) for c in data.cases],  # aligned with data.cases
        sweep_charts=_sweep_charts(data), saturation_charts=_saturation_charts(data), ab_groups=[(k, g, _ab_rows(g)) for k, g in data.ab_groups()],
        generated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), version=__version__,
    )


def render_markdown(data: ReportData, max_lines: int = MD_MAX_LINES, max_bytes: int = MD_MAX_BYTES,
                    history: HistoryView | None = None) -> str:
    """Counts, then one entry per case, regressions first; whole entries only, within both caps."""
    counts = data.counts()
    head = [
        "## perfgate",
        "",
        f"**{counts.regression} regressed**, {counts.failed} failed, {counts.inconclusive} inconclusive, "
        f"{counts.improvements} improved metrics, **{counts.not_compared} NOT COMPARED** "
        f"({counts.no_baseline} without baseline), {counts.skipped} skipped — {counts.cases} cases",
        "",
    ]
    history = history or HistoryView()
    new = [f"- history: {e[:300]}" for e in history.errors] + [
        f"- history: `{h.case_id}`: {line}" for h in history.cases.values() for line in h.new_lines]
    if new:  # every new change point, one line each, before the cases (the nightly's job summary greps these)
        more = [f"- history: … and {len(new) - MD_HISTORY_LINES} more (see index.html)"] \
            if len(new) > MD_HISTORY_LINES else []
        head += ["### history: new change points", *new[:MD_HISTORY_LINES], *more, ""]
    entries: list[list[str]] = [[f"- **saturation** `{s.test_id}`: highest rate within SLO "
                                 f"{_num(s.max_sustained_rate)} req/s, peak goodput {_num(s.peak_goodput)} req/s "
                                 f"({len(s.steps)} steps)"] for s in data.saturations]
    for c in data.cases:  # already ordered: regressions, failures, ... first
        entry = [f"- **{LABEL.get(c.status, c.status)}** `{c.case_id}` ({c.engine} {c.version}, {c.hardware}, machine {c.machine})"]
        if (status_group(c.status) is StatusGroup.FAILED or c.status in NOT_COMPARED) and c.reason:
            entry.append(f"  - {c.reason.splitlines()[0][:200]}")
        if c.verdict is not None and c.verdict.outcome is not None:
            entry.append(f"  - {live_answer(c)}")
        for v in c.metric_verdicts().values():
            if v.verdict in ("regression", "improvement") and not v.observe_only:
                entry.append(f"  - {v.metric} {_pct(v.ratio)} [{_pct(v.ci_low)}, {_pct(v.ci_high)}] {v.verdict}")
        h = history.of(c)
        entry.extend(f"  - history: {line}" for line in (h.new_lines if h else ()))
        entries.append(entry)
    entries.extend([f"- **unreadable result** {u[:200]}"] for u in data.unreadable)

    lines, used = list(head), sum(len(x.encode()) + 1 for x in head)
    for i, entry in enumerate(entries):
        size = sum(len(x.encode()) + 1 for x in entry)
        last = i == len(entries) - 1
        reserve = 0 if last else 1  # room for the "... and N more" line
        if len(lines) + len(entry) + reserve > max_lines or used + size + (0 if last else 80) > max_bytes:
            lines.append(f"- … and {len(entries) - i} more (see index.html)")
            break
        lines.extend(entry)
        used += size
    return "\n".join(lines) + "\n"



def render_report(result_dirs: list[Path], out_dir: Path) -> list[Path]:
    """Merge ``result_dirs`` and write ``out_dir/index.html`` and ``out_dir/summary.md``; return both paths.

    Raises :class:`~perfgate.schema.verdict.VerdictsFileError` for a malformed ``verdicts.json``; a result file
    that fails validation is listed in the report as unreadable instead."""
    out_dir = Path(out_dir)
    data = gather(result_dirs, out_dir)
    history = read_history(result_dirs, data.unreadable)  # the trends, when the session kept a history
    html, md = out_dir / "index.html", out_dir / "summary.md"
    write_text_atomic(html, render_html(data, history))
    write_text_atomic(md, render_markdown(data, history=history))
    return [html, md]

