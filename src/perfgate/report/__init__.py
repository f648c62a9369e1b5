"""The report: one self-contained HTML page and a Markdown summary.

``render_report([dir, ...], out_dir)`` merges any number of result
directories and writes ``index.html`` (inline CSS and SVG charts, no external
request of any kind) and ``summary.md`` (for ``$GITHUB_STEP_SUMMARY`` and PR
comments, regressions first, capped). Both writes are atomic.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import jinja2

from .. import __version__
from ..results import write_text_atomic
from . import charts
from .data import KEY_COLUMNS, CaseView, ReportData, gather

MD_MAX_LINES = 60

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("perfgate.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    trim_blocks=True, lstrip_blocks=True,
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
    "no_baseline": "new", "failed": "FAILED", "client_bound": "CLIENT-BOUND", "env_mismatch": "env mismatch",
    "ok": "ok", "baseline_written": "baseline written", "not_judged": "not judged",
}


def _case_charts(case: CaseView) -> dict[str, str | None]:
    if not case.has_numbers:
        return {}
    tel = {}
    for r in case.results[:1]:
        tel = r.telemetry
    gpu_mem = {k: v for k, v in tel.items() if k.endswith("memory_used_mib")}
    gpu_pow = {k: v for k, v in tel.items() if k.endswith("power_w")}
    return {
        "ttft": charts.ecdf({"TTFT": case.samples("ttft_ms")}, "TTFT (ms)"),
        "itl": charts.ecdf({"ITL (per chunk)": case.samples("itl_ms"), "TPOT": case.samples("tpot_ms")}, "ms"),
        "gpu_mem": charts.timeseries(gpu_mem, "GPU memory (MiB)"),
        "gpu_power": charts.timeseries(gpu_pow, "GPU power (W)"),
    }


def _sweep_charts(data: ReportData) -> list[tuple[str, str]]:
    families: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for c in data.cases:
        point = c.sweep_point()
        if not point or not c.has_numbers:
            continue
        family, params = point
        x_key = "concurrency" if "concurrency" in params else ("request_rate" if "request_rate" in params else None)
        if x_key is None:
            continue
        rest = ",".join(f"{k}={v:g}" for k, v in params.items() if k != x_key)
        label = f"{c.engine} {c.version} {rest}".strip()
        tput = c.medians().get("output_throughput")
        if tput is not None:
            families.setdefault(f"{family} — {c.model} ({x_key})", {}).setdefault(label, []).append((params[x_key], tput))
    return [(name, charts.sweep(pts, "concurrency", "output tok/s")) for name, pts in sorted(families.items())]


def render_html(data: ReportData) -> str:
    return _env.get_template("report.html.j2").render(
        data=data, counts=data.counts(), key_columns=KEY_COLUMNS, label=LABEL,
        case_charts={c.case_id: _case_charts(c) for c in data.cases},
        sweep_charts=_sweep_charts(data), ab_groups=data.ab_groups(),
        generated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), version=__version__,
    )


def render_markdown(data: ReportData, max_lines: int = MD_MAX_LINES) -> str:
    counts = data.counts()
    lines = [
        "## perfgate",
        "",
        f"**{counts['regressions']} regressed**, {counts['failed']} failed, {counts['improvements']} improved metrics, "
        f"{counts['inconclusive']} inconclusive metrics, {counts['new']} without baseline — {counts['cases']} cases",
        "",
    ]
    body: list[str] = []
    for c in data.cases:  # already ordered: regressions, failures, ... first
        head = f"- **{LABEL.get(c.status, c.status)}** `{c.case_id}` ({c.engine} {c.version}, {c.hardware})"
        body.append(head)
        if c.status in ("failed", "client_bound") and c.reason:
            body.append(f"  - {c.reason.splitlines()[0][:200]}")
        for v in c.metric_verdicts().values():
            if v["verdict"] in ("regression", "improvement") and not v["observe_only"]:
                body.append(f"  - {v['metric']} {_pct(v['ratio'])} [{_pct(v['ci_low'])}, {_pct(v['ci_high'])}] {v['verdict']}")
    for u in data.unreadable:
        body.append(f"- **unreadable result** {u[:200]}")
    room = max_lines - len(lines)
    if len(body) > room:
        body = body[: room - 1] + [f"- … and {len(body) - room + 1} more lines in the HTML report"]
    return "\n".join(lines + body) + "\n"


def render_report(result_dirs: list[Path], out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    data = gather(result_dirs, out_dir)
    html, md = out_dir / "index.html", out_dir / "summary.md"
    write_text_atomic(html, render_html(data))
    write_text_atomic(md, render_markdown(data))
    return [html, md]


__all__ = ["render_report", "render_html", "render_markdown", "gather"]
