"""What the report shows, gathered from result directories (pure data, no HTML).

Results from any number of directories merge: cases are keyed by test id,
verdicts come from each directory's ``verdicts.json`` (written by the pytest
session) when present. A result that fails validation is listed as unreadable,
never silently dropped.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..results import Result, ResultError, iter_results, read_result

KEY_COLUMNS = (
    ("ttft_ms.p50", "TTFT p50"),
    ("itl_ms.p50", "ITL p50"),
    ("tpot_ms.mean", "TPOT"),
    ("e2e_ms.p50", "E2E p50"),
    ("output_throughput", "tok/s"),
    ("error_rate", "errors"),
)
SWEEP = re.compile(r"^(?P<family>[^\[]+)\[(?P<params>[^\]]+)\]$")


class VerdictsFileError(ValueError):
    pass


def load_verdicts(path: Path) -> dict[str, dict]:
    """``verdicts.json`` → {case_id: case}; a malformed file is an error naming it."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        if doc.get("schema_version") != 1 or not isinstance(doc.get("cases"), list):
            raise ValueError("schema_version 1 with a `cases` list expected")
        return {c["case_id"]: c for c in doc["cases"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VerdictsFileError(f"{path}: unusable verdicts file ({exc})") from exc


@dataclass
class CaseView:
    case_id: str
    results: list[Result] = field(default_factory=list)
    verdict: dict | None = None  # from verdicts.json
    log_href: str | None = None

    @property
    def first(self) -> Result | None:
        return self.results[0] if self.results else None

    @property
    def engine(self) -> str:
        if self.first:
            return self.first.environment.engine.name
        return (self.verdict or {}).get("engine", "?")

    @property
    def version(self) -> str:
        if self.first:
            return self.first.environment.engine.version or "?"
        return (self.verdict or {}).get("engine_version") or "?"

    @property
    def model(self) -> str:
        return self.first.environment.model if self.first else (self.verdict or {}).get("model", "?")

    @property
    def scenario(self) -> str:
        return self.first.scenario if self.first else (self.verdict or {}).get("scenario", "?")

    @property
    def hardware(self) -> str:
        return self.first.environment.hardware.accelerator if self.first else (self.verdict or {}).get("hardware", "?")

    @property
    def status(self) -> str:
        if self.verdict:
            return self.verdict["status"]
        if any(r.status == "failed" for r in self.results):
            return "failed"
        if any(r.status == "client_bound" for r in self.results):
            return "client_bound"
        return "no_baseline"

    @property
    def reason(self) -> str | None:
        if self.verdict and self.verdict.get("reason"):
            return self.verdict["reason"]
        bad = [r for r in self.results if r.status != "ok"]
        return bad[0].failure_reason if bad else None

    @property
    def has_numbers(self) -> bool:
        return self.status not in ("failed", "client_bound")

    def metric_verdicts(self) -> dict[str, dict]:
        return {v["metric"]: v for v in (self.verdict or {}).get("verdicts", [])}

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

    def sweep_point(self) -> tuple[str, dict[str, float]] | None:
        m = SWEEP.match(self.scenario)
        if not m:
            return None
        params = dict(kv.split("=", 1) for kv in m["params"].split(","))
        return m["family"], {k: float(v) for k, v in params.items()}


@dataclass
class ReportData:
    cases: list[CaseView]
    unreadable: list[str]

    def counts(self) -> dict[str, int]:
        metric_verdicts = [v for c in self.cases for v in c.metric_verdicts().values()]
        return {
            "regressions": sum(c.status == "regression" for c in self.cases),
            "improvements": sum(v["verdict"] == "improvement" and not v["observe_only"] for v in metric_verdicts),
            "inconclusive": sum(v["verdict"] == "inconclusive" and not v["observe_only"] for v in metric_verdicts),
            "new": sum(c.status == "no_baseline" for c in self.cases),
            "failed": sum(c.status in ("failed", "client_bound") for c in self.cases),
            "cases": len(self.cases),
        }

    def ab_groups(self) -> list[tuple[tuple[str, str, str], list[CaseView]]]:
        """Same model + scenario + hardware measured with different engines or versions."""
        groups: dict[tuple[str, str, str], list[CaseView]] = defaultdict(list)
        for c in self.cases:
            if c.has_numbers and c.results:
                groups[(c.model, c.scenario, c.hardware)].append(c)
        return [(k, sorted(v, key=lambda c: (c.engine, c.version))) for k, v in sorted(groups.items())
                if len({(c.engine, c.version) for c in v}) > 1]


def gather(result_dirs: list[Path], out_dir: Path) -> ReportData:
    by_case: dict[str, CaseView] = {}
    unreadable: list[str] = []
    for d in result_dirs:
        d = Path(d)
        verdicts = load_verdicts(d / "verdicts.json") if (d / "verdicts.json").exists() else {}
        for path in iter_results(d):
            try:
                r = read_result(path)
            except ResultError as exc:
                unreadable.append(str(exc))
                continue
            view = by_case.setdefault(r.test_id, CaseView(r.test_id))
            view.results.append(r)
            if r.test_id in verdicts:
                view.verdict = verdicts[r.test_id]
            log = r.environment.engine.log_path
            if log and view.log_href is None:
                log_path = Path(log) if Path(log).is_absolute() else d / log
                view.log_href = os.path.relpath(log_path.resolve(), Path(out_dir).resolve())
        for case_id, v in verdicts.items():  # a case that failed before producing any result
            if case_id not in by_case:
                by_case[case_id] = CaseView(case_id, verdict=v)
    for v in by_case.values():
        v.results.sort(key=lambda r: r.trial)
    order = {"regression": 0, "failed": 1, "client_bound": 2, "env_mismatch": 3, "no_baseline": 4}
    cases = sorted(by_case.values(), key=lambda c: (order.get(c.status, 5), c.engine, c.version, c.model, c.scenario))
    return ReportData(cases, unreadable)
