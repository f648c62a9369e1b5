"""The results directory of one run: trial files, server logs, verdicts.json and the report.

A results directory holds one run: trial files and verdicts of earlier runs
are removed before the first case, so the report never merges them into this
run's figures. At the end the session writes verdicts.json and renders the
report; a report that fails to render never hides the test results.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from perfgate.schema.result import RESULT_SUFFIX
from perfgate.schema.verdict import CaseVerdict, VerdictsFile


@dataclass(frozen=True)
class Rendered:
    """Where the report went (index.html, summary.md), or why it did not render."""

    paths: tuple[Path, ...] = ()
    error: str | None = None


class ResultsDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._fresh = False

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def start_fresh(self) -> None:
        """Remove an earlier run's trial files and verdicts, once per session (before its first case)."""
        if self._fresh:
            return
        self._fresh = True
        old = self.path / "results"
        if old.is_dir() and any(old.glob(f"*{RESULT_SUFFIX}")):
            shutil.rmtree(old)
        (self.path / "verdicts.json").unlink(missing_ok=True)

    def write_verdicts(self, cases: Sequence[CaseVerdict]) -> Path:
        return VerdictsFile(cases=list(cases)).write(self.path / "verdicts.json")

    def render_report(self) -> Rendered:
        """index.html + summary.md into this directory, from every result file in it."""
        from perfgate.report import render_report

        try:
            return Rendered(tuple(render_report([self.path], self.path)))
        except Exception as exc:  # noqa: BLE001 - reported in the terminal summary
            return Rendered(error=f"report not rendered: {type(exc).__name__}: {exc}")
