"""What the report shows, gathered from result directories (pure data, no HTML).

Results from any number of directories merge: cases are keyed by test id,
verdicts come from each directory's ``verdicts.json`` (written by the pytest
session) when present. A result that fails validation is listed as unreadable,
never silently dropped.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from perfgate._versions import version_key
from perfgate.schema.result import (
    SATURATION_SUFFIX,
    Result,
    ResultError,
    SaturationResult,
    iter_results,
    read_result,
    read_saturation,
)
from perfgate.schema.status import UNUSABLE, CaseStatus, StatusCounts, count_statuses
from perfgate.schema.verdict import CaseVerdict, LiveRecord, MetricVerdict, case_status, load_verdicts

KEY_COLUMNS = (
    ("ttft_ms.p50", "TTFT p50"),
    ("itl_per_token_ms.p50", "ITL/token p50"),
    ("tpot_ms.mean", "TPOT"),
    ("e2e_ms.p50", "E2E p50"),
    ("output_throughput", "tok/s"),
    ("error_rate", "errors"),
)
SWEEP = re.compile(r"^(?P<family>[^\[]+)\[(?P<params>[^\]]+)\]$")


@dataclass
class CaseView:
    case_id: str
    results: list[Result] = field(default_factory=list)
    verdict: CaseVerdict | None = None  # from verdicts.json
    log_href: str | None = None  # relative to the report when possible
    log_file: str | None = None  # where the log was found, for display
    log_missing: str | None = None  # recorded log path that is not on this machine

    @property
    def first(self) -> Result | None:
        return self.results[0] if self.results else None

    @property
    def engine(self) -> str:
        if self.first:
            return self.first.environment.engine.name
        return self.verdict.engine if self.verdict else "?"

    @property
    def version(self) -> str:
        if self.first:
            return self.first.environment.engine.version or "?"
        return (self.verdict.engine_version if self.verdict else None) or "?"

    @property
    def model(self) -> str:
        return self.first.environment.model if self.first else (self.verdict.model if self.verdict else "?")

    @property
    def scenario(self) -> str:
        return self.first.scenario if self.first else (self.verdict.scenario if self.verdict else "?")

    @property
    def hardware(self) -> str:
        return self.first.environment.hardware.accelerator if self.first else (self.verdict.hardware if self.verdict else "?")

    @property
    def status(self) -> CaseStatus:
        if self.verdict:
            return self.verdict.status
        return case_status(error=None, trial_statuses=[r.status for r in self.results], judgement=None)

    @property
    def machine(self) -> str:
        if self.first and self.first.environment.machine:
            return self.first.environment.machine
        return (self.verdict.machine if self.verdict else None) or "?"

    @property
    def reason(self) -> str | None:
        if self.verdict and self.verdict.reason:
            return self.verdict.reason
        bad = [r for r in self.results if r.status != "ok"]
        return bad[0].failure_reason if bad else None

    @property
    def has_numbers(self) -> bool:
        return self.status not in UNUSABLE

    @property
    def live(self) -> LiveRecord | None:
        """A live A/B's blocks and looks (its B side's verdict), else None."""
        return self.verdict.live if self.verdict else None

    @property
    def answered_live(self) -> bool:
        """Judged against (or serving as) a live reference engine: the paired estimate is its comparison."""
        v = self.verdict
        return v is not None and (v.status == "reference" or (v.baseline is not None and v.baseline.live_engine is not None))

    def metric_verdicts(self) -> dict[str, MetricVerdict]:
        return {v.metric: v for v in self.verdict.verdicts} if self.verdict else {}

    def medians(self) -> dict[str, float]:
        out: dict[str, list[float]] = defaultdict(list)
        for r in self.results:
            if r.summary and r.status == "ok":
                for k, v in r.summary.metrics.items():
                    if v is not None:
                        out[k].append(v)
        return {k: float(np.median(v)) for k, v in out.items()}

    def samples(self, field_name: str) -> list[float]:
        vals: list[float] = []
        for r in self.results:
            if r.status != "ok":
                continue
            for q in r.requests:
                if q.error is None:
                    v = getattr(q, field_name)
                    vals.extend(v if isinstance(v, list) else ([v] if v is not None else []))
        return vals

    def sweep_point(self) -> tuple[str, dict[str, float | str]] | None:
        """``family[prompt_tokens=50,concurrency=2]`` -> ("family", {"prompt_tokens": 50.0, "concurrency": 2.0})."""
        m = SWEEP.match(self.scenario)
        if not m:
            return None
        params: dict[str, float | str] = {}
        for kv in m["params"].split(","):
            k, _, v = kv.partition("=")
            try:
                params[k.strip()] = float(v)
            except ValueError:
                params[k.strip()] = v.strip()
        return m["family"].strip(), params


@dataclass(frozen=True)
class ReportCounts(StatusCounts):
    """:class:`~perfgate.schema.status.StatusCounts` plus the report's metric-level counts."""

    improvements: int = 0  # gating metrics judged improved
    inconclusive_metrics: int = 0  # gating metrics undecided (a case's own count is ``inconclusive``)


@dataclass
class ReportData:
    cases: list[CaseView]
    unreadable: list[str]
    saturations: list[SaturationResult] = field(default_factory=list)  # saturation curves (*.saturation.json)

    def counts(self) -> ReportCounts:
        """The cases by status group (the same count as the terminal summary), and the gating metrics that
        improved or were inconclusive."""
        metric_verdicts = [v for c in self.cases for v in c.metric_verdicts().values() if not v.observe_only]
        return ReportCounts(**asdict(count_statuses(c.status for c in self.cases)),
                            improvements=sum(v.verdict == "improvement" for v in metric_verdicts),
                            inconclusive_metrics=sum(v.verdict == "inconclusive" for v in metric_verdicts))

    def ab_groups(self) -> list[tuple[tuple[str, str, str], list[CaseView]]]:
        """Same model + scenario + hardware measured with different engines or versions, in separate runs (a
        live A/B is answered by its paired estimate, shown with its case: its trials' medians are not a second
        answer)."""
        groups: dict[tuple[str, str, str], list[CaseView]] = defaultdict(list)
        for c in self.cases:
            if c.has_numbers and c.results and not c.answered_live:
                groups[(c.model, c.scenario, c.hardware)].append(c)
        return [(k, sorted(v, key=lambda c: (c.engine, version_key(c.version)))) for k, v in sorted(groups.items())
                if len({(c.engine, c.version) for c in v}) > 1]


_ORDER: dict[CaseStatus, int] = {"regression": 0, "failed": 1, "client_bound": 2, "env_mismatch": 3, "not_comparable": 3,
          "workload_not_delivered": 2, "slo_violated": 1, "inconclusive": 3}


def _rank(c: CaseView) -> int:
    """Regressions, failures, client-bound, env mismatch, improvements, new, the rest."""
    if c.status in _ORDER:
        return _ORDER[c.status]
    if any(v.verdict == "improvement" and not v.observe_only for v in c.metric_verdicts().values()):
        return 4
    return 5 if c.status == "no_baseline" else 6


def _find_log(log: str, result_dir: Path) -> Path | None:
    """The server log on this machine: as recorded, relative to the result directory, or under its logs/
    (results downloaded from another runner keep that runner's absolute paths)."""
    p = Path(log)
    for candidate in (p if p.is_absolute() else result_dir / p, result_dir / "logs" / p.name, result_dir / p.name):
        if candidate.is_file():
            return candidate
    return None


def gather(result_dirs: list[Path], out_dir: Path) -> ReportData:
    """Merge result directories. A case is its test id with one engine version on one machine (runners and
    versions differ, test ids may not); each directory's verdicts.json applies to that directory's results."""
    by_case: dict[tuple[str, ...], CaseView] = {}
    unreadable: list[str] = []
    saturations: list[SaturationResult] = []
    out_dir = Path(out_dir).resolve()
    for d in result_dirs:
        d = Path(d)
        verdicts = load_verdicts(d / "verdicts.json").by_case() if (d / "verdicts.json").exists() else {}
        # A saturation step's result file is a point of its curve (the saturation section), not a case.
        step_of: dict[str, str] = {}
        for path in sorted(d.rglob(f"*{SATURATION_SUFFIX}")):
            try:
                sat = read_saturation(path)
            except ResultError as exc:
                unreadable.append(str(exc))
                continue
            saturations.append(sat)
            step_of.update((step.test_id, sat.test_id) for step in sat.steps)
        step_logs: dict[str, tuple[str, Path]] = {}  # saturation case id -> a step's engine log
        for path in iter_results(d):
            try:
                r = read_result(path)
            except ResultError as exc:
                unreadable.append(str(exc))
                continue
            if r.test_id in step_of:
                if r.environment.engine.log_path:
                    step_logs.setdefault(step_of[r.test_id], (r.environment.engine.log_path, d))
                continue
            env = r.environment
            key = (r.test_id, env.engine.name, env.engine.version or "?", env.hardware.accelerator, env.machine or "?")
            view = by_case.setdefault(key, CaseView(r.test_id))
            view.results.append(r)
            if r.test_id in verdicts:
                view.verdict = verdicts[r.test_id]
            if r.environment.engine.log_path and view.log_href is None:
                _link_log(view, r.environment.engine.log_path, d, out_dir)
        for case_id, v in verdicts.items():  # a case that failed before producing any result, or a saturation
            if not any(c.verdict is v for c in by_case.values()):
                view = by_case[(case_id, v.engine, v.engine_version or "?", v.hardware, v.machine or "?")] = \
                    CaseView(case_id, verdict=v)
                if case_id in step_logs:
                    _link_log(view, *step_logs[case_id], out_dir)
    for v in by_case.values():
        v.results.sort(key=lambda r: r.trial)
    cases = sorted(by_case.values(), key=lambda c: (_rank(c), c.engine, version_key(c.version), c.model, c.scenario))
    return ReportData(cases, unreadable, saturations)


def _link_log(view: CaseView, log: str, result_dir: Path, out_dir: Path) -> None:
    """Point the case at its server log, relative to the report when found, else say it is missing."""
    found = _find_log(log, result_dir)
    if found is None:
        view.log_missing = log
    else:
        view.log_href = Path(os.path.relpath(found.resolve(), out_dir)).as_posix()
        view.log_file = str(found)
        view.log_missing = None
