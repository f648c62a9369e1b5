"""The history a session wrote beside verdicts.json (history.json), as the report shows it: per case the trend
of each key metric with its change points and the current run, and a table of the open change points.

A results directory without history.json (a session with ``--perf-history off``, a directory written before
the store existed, ``perfgate report DIR`` anywhere) renders without this section; a history.json that cannot
be read is listed with the unreadable files, never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from perfgate.judge.changepoint import HistoryPolicy
from perfgate.judge.history_run import HistoryRun
from perfgate.report.trends import Trend, case_trends, open_change_points

HISTORY_FILE = "history.json"


@dataclass
class CaseHistory:
    case_id: str
    accelerator: str | None
    series_id: int
    run_id: int | None
    machine: str
    store: str | None
    n_runs: int
    trends: list[Trend] = field(default_factory=list)
    open_rows: list[dict[str, object]] = field(default_factory=list)
    new_lines: list[str] = field(default_factory=list)  # one per new change point (terminal, summary.md)


@dataclass
class HistoryView:
    cases: dict[tuple[str, str | None], CaseHistory] = field(default_factory=dict)  # (case id, accelerator)
    stores: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the store's faults, as the session said them

    def of(self, case) -> CaseHistory | None:
        """The history of a report case (a test id on one runner's hardware: merged runners share test ids)."""
        return self.cases.get((case.case_id, case.hardware)) or self.cases.get((case.case_id, None))


def _case(doc: dict, store: str | None) -> CaseHistory:
    runs = [HistoryRun(run_id=r["run_id"], started_at=r["started_at"], values=r["values"],
                       environment=r.get("environment") or {}, status=r.get("status", "ok")) for r in doc["runs"]]
    pol = doc.get("policy") or {}
    policy = HistoryPolicy(**({"metrics": tuple(pol["metrics"])} if pol.get("metrics") else {}),
                           min_effect=dict(pol.get("min_effect") or {}), observe_only=tuple(pol.get("observe_only") or ()))
    resets = {m: r for m, r in doc.get("resets") or []}
    trends = case_trends(runs, policy, resets, current_run_id=doc.get("run_id"))
    return CaseHistory(doc["case_id"], doc.get("accelerator"), doc["series_id"], doc.get("run_id"), doc.get("machine", "?"), store,
                       len(runs), trends, open_change_points(trends), list(doc.get("new_change_points") or []))


def read_history(result_dirs: list[Path], unreadable: list[str]) -> HistoryView:
    """Every history.json of ``result_dirs``; a file that is not one is added to ``unreadable``."""
    view = HistoryView()
    for d in result_dirs:
        path = Path(d) / HISTORY_FILE
        if not path.is_file():
            continue
        try:
            doc = json.loads(path.read_text())
            if doc.get("store"):
                view.stores.append(doc["store"])
            if doc.get("error"):
                view.errors.append(doc["error"])
            for c in doc.get("cases") or []:
                h = _case(c, doc.get("store"))
                view.cases[(h.case_id, h.accelerator)] = h
        except (OSError, ValueError, KeyError, TypeError) as exc:
            unreadable.append(f"{path}: not a readable history.json ({type(exc).__name__}: {exc})")
    return view
