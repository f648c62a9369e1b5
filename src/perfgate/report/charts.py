"""Charts as inline SVG strings, drawn by matplotlib at report time (no JS, no network).

Figures are built with ``matplotlib.figure.Figure`` under an ``rc_context``: no
pyplot global state, no change to the caller's rcParams. The SVG is trimmed
for inlining (no prolog, namespaces, metadata, unreferenced ids, font lists or
sub-0.1pt precision) and its ids are made unique per chart.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

try:
    import matplotlib
    from matplotlib.figure import Figure
except ImportError as exc:  # a core dependency: a broken install says so in one line, it is not a chart-less report
    raise ImportError(f"perfgate's report needs matplotlib, a dependency of perfgate that is missing here "
                      f"(reinstall perfgate, or pip install matplotlib): {exc}") from exc

RC = {
    "svg.fonttype": "none",  # text stays text: small, and the page's font renders it
    "svg.hashsalt": "perfgate",  # deterministic ids
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 7,
    "legend.frameon": False,
}
MAX_ECDF_POINTS = 150  # that many quantiles draw the same curve as thousands of samples


@contextmanager
def _figure(height: float = 2.4) -> Iterator:
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(4.6, height))
        yield fig, fig.add_subplot()


def _render(height: float, draw: Callable) -> str:
    with _figure(height) as (fig, ax):
        draw(ax)
        # Fixed margins instead of bbox_inches="tight", which draws every figure twice.
        fig.subplots_adjust(left=0.15, right=0.98, bottom=0.2, top=0.97)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return _inline(buf.getvalue())


def _inline(text: str) -> str:
    text = text[text.index("<svg"):]  # the XML prolog and DOCTYPE (they name w3.org) go
    text = re.sub(r'\s*xmlns(:xlink)?="[^"]+"', "", text)  # inline SVG needs no namespace URLs
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r' transform="rotate\(-?0 [^"]*\)"', "", text)
    text = re.sub(r"\s*\n\s*", " ", text)  # path data and indentation
    text = re.sub(r">\s+<", "><", text)
    text = re.sub(r'="[^"]*"', _trim_attribute, text)  # attributes only: tick labels keep their digits
    return _unwrap_groups(_scope_ids(text))


def _trim_attribute(m: re.Match) -> str:
    value = re.sub(r"font-family:[^;\"]*;?\s*", "", m[0])  # the text inherits the page's font
    value = re.sub(r"(\d\.\d)\d+", r"\1", value)  # 0.1 pt is finer than a pixel
    value = re.sub(r"([:;]) ", r"\1", value)  # style declarations
    return re.sub(r' +"$', '"', value)


def _unwrap_groups(svg: str) -> str:
    """Drop ``<g>`` elements without attributes (matplotlib nests one per artist), keeping their content."""
    out, stack, pos = [], [], 0
    for m in re.finditer(r"<g>|<g\s[^>]*>|</g>", svg):
        out.append(svg[pos:m.start()])
        pos = m.end()
        tag = m[0]
        if tag == "</g>":
            if stack.pop():
                out.append(tag)
        else:
            keep = tag != "<g>"
            stack.append(keep)
            if keep:
                out.append(tag)
    out.append(svg[pos:])
    return "".join(out)


def _scope_ids(svg: str) -> str:
    """Keep only referenced ids, prefixed with a digest of the chart: charts inline in one page share no id."""
    refs = set(re.findall(r'url\(#([^)]+)\)', svg)) | set(re.findall(r'href="#([^"]+)"', svg))
    prefix = "c" + hashlib.sha1(svg.encode()).hexdigest()[:6] + "-"
    svg = re.sub(r'\s\bid="([^"]+)"', lambda m: f' id="{prefix}{m[1]}"' if m[1] in refs else "", svg)
    svg = re.sub(r'url\(#([^)]+)\)', lambda m: f"url(#{prefix}{m[1]})", svg)
    return re.sub(r'(\b(?:xlink:)?href)="#([^"]+)"', lambda m: f'{m[1]}="#{prefix}{m[2]}"', svg)


def ecdf(series: dict[str, list[float]], xlabel: str) -> str | None:
    """Empirical CDFs of latency samples, one line per label."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None

    def draw(ax) -> None:
        for label, values in series.items():
            x = np.sort(np.asarray(values, dtype=float))
            y = np.arange(1, x.size + 1) / x.size
            if x.size > MAX_ECDF_POINTS:
                y = np.linspace(1 / x.size, 1.0, MAX_ECDF_POINTS)
                x = np.quantile(x, y)
            ax.step(x, y, where="post", label=label, linewidth=1.3)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction ≤ x")
        if len(series) > 1:
            ax.legend()

    return _render(2.4, draw)


def sweep(points: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str) -> str | None:
    """Throughput against concurrency (or rate), one line per series."""
    if not points:
        return None

    def draw(ax) -> None:
        for label, pts in points.items():
            pts = sorted(pts)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", linewidth=1.3, markersize=3, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend()

    return _render(2.4, draw)


def saturation(points: list[tuple[float, float | None, float | None, bool]], sustained: float | None) -> str | None:
    """Goodput and throughput against the offered rate; steps outside the SLOs hollow, the answer marked."""
    pts = [p for p in points if p[1] is not None]
    if not pts:
        return None

    def draw(ax) -> None:
        x = [p[0] for p in pts]
        ax.plot(x, [p[2] or 0 for p in pts], linewidth=1.0, linestyle="--", color="0.5", label="throughput")
        ax.plot(x, [p[1] for p in pts], linewidth=1.3, color="C0", label="goodput (within SLO)")
        ax.scatter([p[0] for p in pts if p[3]], [p[1] for p in pts if p[3]], s=14, color="C0", zorder=3)
        ax.scatter([p[0] for p in pts if not p[3]], [p[1] for p in pts if not p[3]], s=14, facecolors="none",
                   edgecolors="C3", zorder=3, label="step misses an SLO")
        if sustained is not None:
            ax.axvline(sustained, color="C2", linewidth=1.0, label=f"highest rate within SLO: {sustained:g}")
        ax.set_xlabel("offered rate (req/s)")
        ax.set_ylabel("req/s")
        ax.legend()

    return _render(2.6, draw)


def timeseries(series: dict[str, list[list[float]]], ylabel: str) -> str | None:
    """Telemetry over the run, one line per series (e.g. one per GPU)."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None

    def draw(ax) -> None:
        for label, pts in series.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], linewidth=1.2, label=label)
        ax.set_xlabel("seconds into the run")
        ax.set_ylabel(ylabel)
        ax.legend()

    return _render(2.2, draw)


def ab_blocks(blocks: list[tuple[int, float, bool]], looks: list[tuple[int, float, float | None, float | None,
              float | None]], min_effect: float | None, lower_is_better: bool) -> str | None:
    """A live A/B's blocks: each block's B/A of the primary metric (dropped blocks as crosses), the running paired
    estimate with its interval at each look, and the look's regression boundary (all as % change of B vs A).

    ``blocks``: (block, ratio, dropped); ``looks``: (blocks, ratio, ci_low, ci_high, boundary)."""
    if not blocks and not looks:
        return None

    def pct(r: float | None) -> float:
        return np.nan if r is None else (r - 1.0) * 100.0

    def draw(ax) -> None:
        kept = [(k, r) for k, r, d in blocks if not d]
        gone = [(k, r) for k, r, d in blocks if d]
        ax.axhline(0.0, color="0.4", linewidth=0.8)
        if kept:
            ax.scatter([k for k, _ in kept], [pct(r) for _, r in kept], s=9, color="C0", alpha=0.6, label="block B/A")
        if gone:
            ax.scatter([k for k, _ in gone], [pct(r) for _, r in gone], s=18, marker="x", color="C3",
                       label="dropped block (re-run)")
        if looks:
            x = [lk[0] - 1 for lk in looks]  # the look after n blocks sits on the n-th block (index n - 1)
            est = np.array([pct(lk[1]) for lk in looks])
            lo, hi = np.array([pct(lk[2]) for lk in looks]), np.array([pct(lk[3]) for lk in looks])
            ax.errorbar(x, est, yerr=[np.nan_to_num(est - lo), np.nan_to_num(hi - est)], color="k", marker="o",
                        markersize=3, linewidth=1.2, capsize=2, label="estimate, interval at each look")
            ax.plot(x, [pct(lk[4]) for lk in looks], drawstyle="steps-mid", color="C3", linestyle="--",
                    linewidth=1.0, marker="_", markersize=12, label="regression boundary at each look")
        if min_effect:
            worse = min_effect * 100 if lower_is_better else -min_effect * 100
            ax.axhline(worse, color="C1", linestyle=":", linewidth=1.0, label=f"min effect {worse:+.0f}%")
        ax.set_xlabel("block")
        ax.set_ylabel("B vs A (%)")
        ax.legend(loc="best")

    return _render(2.8, draw)
