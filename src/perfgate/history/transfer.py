"""Into and out of the history store: result directories written before it existed, and CSV / Otava / JSON.

Import reads what sessions already leave behind - a results directory (or a
nightly artifact: a directory or a .zip of one) with its ``verdicts.json`` -
with the same validating readers as the report: a run is one case's trials
from one session directory; its status is the session's verdict when
recorded, else what its trials say. Unreadable files are listed, never
silently dropped; results already recorded are found, not written twice.

Export gives a series as long-form CSV (one row per trial and metric), as
Otava's CSV (one row per run: time, attributes, one column per metric, the
run's median), or as JSON.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from perfgate.history.store import HistoryStore, Series
from perfgate.schema.result import SATURATION_SUFFIX, Result, ResultError, iter_results, read_result, read_saturation
from perfgate.schema.verdict import VerdictsFileError, case_status, load_verdicts


@dataclass
class ImportReport:
    recorded: int = 0
    already: int = 0
    unreadable: list[str] = field(default_factory=list)


def _session_dir(path: Path, top: Path) -> Path:
    """The session directory a result belongs to: the nearest parent with verdicts.json, else above results/."""
    for parent in path.parents:
        if (parent / "verdicts.json").is_file():
            return parent
        if parent == top:
            break
    return path.parent.parent if path.parent.name == "results" else path.parent


def _gather(top: Path, report: ImportReport) -> dict[tuple, list[Result]]:
    steps: set[str] = set()
    for p in sorted(top.rglob(f"*{SATURATION_SUFFIX}")):
        try:
            steps.update(s.test_id for s in read_saturation(p).steps)
        except ResultError as exc:
            report.unreadable.append(str(exc))
    runs: dict[tuple, list[Result]] = defaultdict(list)
    for path in iter_results(top):
        try:
            r = read_result(path)
        except ResultError as exc:
            report.unreadable.append(str(exc))
            continue
        if r.test_id in steps:  # a point of a saturation curve, not a case's trial
            continue
        env = r.environment
        runs[(_session_dir(path, top), r.test_id, env.engine.name, env.engine.version, env.machine,
              env.hostname)].append(r)
    return runs


def import_dirs(store: HistoryStore, dirs: list[Path]) -> ImportReport:
    """Record every run found under ``dirs`` (directories or .zip artifacts), oldest first."""
    report = ImportReport()
    with tempfile.TemporaryDirectory(prefix="perfgate-import-") as tmp:
        tops = []
        for i, d in enumerate(map(Path, dirs)):
            if d.is_file() and zipfile.is_zipfile(d):
                out = Path(tmp) / str(i)
                with zipfile.ZipFile(d) as z:
                    z.extractall(out)
                tops.append((out, d))
            elif d.is_dir():
                tops.append((d, d))
            else:
                report.unreadable.append(f"{d}: not a directory or a .zip artifact")
        found: list[tuple[str, list[Result], str, str]] = []
        for top, shown in tops:
            verdicts: dict[Path, dict] = {}
            for (session, test_id, *_), results in _gather(top, report).items():
                if session not in verdicts:
                    try:
                        verdicts[session] = load_verdicts(session / "verdicts.json").by_case() \
                            if (session / "verdicts.json").is_file() else {}
                    except VerdictsFileError as exc:
                        report.unreadable.append(str(exc))
                        verdicts[session] = {}
                v = verdicts[session].get(test_id)
                status = v.status if v else case_status(error=None, trial_statuses=[r.status for r in results],
                                                        judgement=None)
                where = shown if top == shown else f"{shown}!{session.relative_to(top)}"
                found.append((min(r.environment.started_at for r in results), results, status, f"import {where}"))
        for _, results, status, source in sorted(found, key=lambda f: f[0]):
            rec = store.record_run(sorted(results, key=lambda r: r.trial), status, source=source)
            if rec.new:
                report.recorded += 1
            else:
                report.already += 1
    return report


# ---- export ---------------------------------------------------------------------------------------------

OTAVA_ATTRIBUTES = ("run", "engine_version", "git_commit", "model_revision", "status")


def to_csv(store: HistoryStore, series: list[Series]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["series", "case", "machine", "run", "started_at", "trial", "trial_status", "metric", "value"])
    for s in series:
        for run_id, started, trial, status, metric, value in store.trial_rows(s.info.id):
            w.writerow([s.info.id, s.info.case_id, s.info.machine, run_id, started, trial, status, metric,
                        repr(float(value))])
    return out.getvalue()


def to_otava_csv(s: Series, metrics: list[str] | None = None) -> str:
    """One row per run: ``time`` (ISO-8601), the attributes, one column per metric (the run's median; empty when
    the run has none). Otava reads it with ``time_column: time`` and these metric columns."""
    names = metrics or sorted({m for r in s.runs for m in r.values})
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["time", *OTAVA_ATTRIBUTES, *names])
    for r in s.runs:
        attrs = [r.run_id, r.environment.get("engine_version") or "", r.environment.get("git_commit") or "",
                 r.environment.get("model_revision") or "", r.status]
        w.writerow([r.started_at, *attrs, *[repr(r.values[m]) if m in r.values else "" for m in names]])
    return out.getvalue()


def to_json(series: list[Series]) -> str:
    return json.dumps([{
        "series": s.info.id, "case": s.info.case_id, "machine": s.info.machine, "engine_entry": s.info.engine_entry,
        "model_entry": s.info.model_entry, "scenario": s.info.scenario, "hardware": json.loads(s.info.hardware),
        "resets": [{"metric": m, "run": r} for m, r in s.resets.items()],
        "runs": [{"run": r.run_id, "started_at": r.started_at, "status": r.status, "environment": dict(r.environment),
                  "values": dict(r.values)} for r in s.runs],
    } for s in series], indent=1) + "\n"
