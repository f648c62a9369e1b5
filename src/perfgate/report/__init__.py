"""The report: one self-contained HTML page and a Markdown summary.

``render_report([dir, ...], out_dir)`` merges any number of result
directories and writes ``index.html`` (inline CSS and SVG charts, no external
request of any kind) and ``summary.md`` (for ``$GITHUB_STEP_SUMMARY`` and PR
comments, regressions first, capped). Both writes are atomic.

The documents it reads (``Result``, ``VerdictsFile`` and their readers) are
perfgate's public names (``from perfgate import VerdictsFile``), defined once in
:mod:`perfgate.schema`; this package does not re-export them. Rendering pulls in
jinja2, numpy and matplotlib (a core dependency), so those load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perfgate.report.data import ReportData, gather
    from perfgate.report.render import (
        MD_MAX_LINES,
        render_html,
        render_markdown,
        render_report,
    )

_LAZY = {"render_report": "render", "render_html": "render", "render_markdown": "render", "MD_MAX_LINES": "render",
         "gather": "data", "ReportData": "data"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["render_report", "render_html", "render_markdown", "gather", "ReportData", "MD_MAX_LINES"]
