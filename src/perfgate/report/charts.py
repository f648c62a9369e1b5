"""Charts as inline SVG strings, drawn by matplotlib at report time (no JS, no network)."""

from __future__ import annotations

import io
import re

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False, "svg.hashsalt": "perfgate"})
    return plt


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    _plt().close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE (they reference w3.org)
    text = re.sub(r'\s*xmlns(:xlink)?="[^"]+"', "", text)  # inline SVG needs no namespace URLs
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)


def ecdf(series: dict[str, list[float]], xlabel: str) -> str | None:
    """Empirical CDFs of latency samples, one line per label."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 2.4))
    for label, values in series.items():
        x = np.sort(np.asarray(values))
        y = np.arange(1, x.size + 1) / x.size
        if x.size > 150:  # 150 quantiles draw the same curve; keeps the page small
            y = np.linspace(1 / x.size, 1.0, 150)
            x = np.quantile(x, y)
        ax.step(x, y, where="post", label=label, linewidth=1.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction ≤ x")
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def sweep(points: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str) -> str | None:
    """Throughput against concurrency (or rate), one line per series."""
    if not points:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 2.4))
    for label, pts in points.items():
        pts = sorted(pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", linewidth=1.3, markersize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)


def timeseries(series: dict[str, list[list[float]]], ylabel: str) -> str | None:
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 2.2))
    for label, pts in series.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], linewidth=1.2, label=label)
    ax.set_xlabel("seconds into the run")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    return _svg(fig)
