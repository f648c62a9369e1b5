"""The schema of ``<results_dir>/verdicts.json``: the pytest session's judgements, read by the report.

The session writes one :class:`CaseVerdicts` per case (``VerdictsFile(cases=[...]).write(path)``);
the report reads the file back with :func:`load_verdicts`. Importing this module
pulls in pydantic only (``perfgate.report`` loads jinja2, numpy and matplotlib lazily).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..results import write_text_atomic

SCHEMA_VERSION = 1

CaseStatus = Literal["ok", "regression", "failed", "client_bound", "no_baseline", "env_mismatch", "baseline_written"]
VerdictName = Literal["regression", "improvement", "no_change", "inconclusive", "no_baseline"]


class VerdictsFileError(ValueError):
    """verdicts.json is missing, not JSON, or not this schema; the message names the file."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricVerdictRecord(_Model):
    """One metric of one case: current trials against the baseline's trials."""

    metric: str
    verdict: VerdictName
    ratio: float | None = None  # current / baseline
    ci_low: float | None = None  # interval on the ratio
    ci_high: float | None = None
    change_pct: float | None = None
    mde_pct: float | None = None  # smallest change detectable here (~80% power)
    n_baseline: int
    n_current: int
    direction: Literal["lower", "higher"]  # which way is better
    observe_only: bool = False
    baseline_median: float | None = None
    current_median: float | None = None

    @classmethod
    def from_verdict(cls, v) -> MetricVerdictRecord:
        """From a :class:`perfgate.stats.MetricVerdict` (or anything with the same attributes)."""
        return cls(**{name: getattr(v, name, None) for name in cls.model_fields})

    @property
    def judged(self) -> bool:
        """Counts toward the gate (observe-only metrics are shown, never counted)."""
        return not self.observe_only


class BaselineRef(_Model):
    path: str
    engine_version: str | None = None
    created_at: str


class CaseVerdicts(_Model):
    case_id: str
    engine: str
    engine_version: str | None = None
    model: str
    scenario: str
    hardware: str
    status: CaseStatus
    reason: str | None = None
    baseline: BaselineRef | None = None
    verdicts: list[MetricVerdictRecord] = []


class VerdictsFile(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    cases: list[CaseVerdicts] = []

    def by_case(self) -> dict[str, CaseVerdicts]:
        return {c.case_id: c for c in self.cases}

    def dumps(self) -> str:
        return self.model_dump_json(indent=1) + "\n"

    def write(self, path: Path) -> Path:
        """Atomically (temp file + rename), so a reader never sees half a file."""
        write_text_atomic(Path(path), self.dumps())
        return Path(path)


def load_verdicts(path: Path) -> VerdictsFile:
    """Read and validate ``verdicts.json``; any problem is a :class:`VerdictsFileError` naming the file."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise VerdictsFileError(f"{path}: cannot read verdicts file ({exc.strerror or exc})") from exc
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise VerdictsFileError(f"{path}: verdicts file is not JSON ({exc})") from exc
    if isinstance(doc, dict) and doc.get("schema_version") not in (None, SCHEMA_VERSION):
        raise VerdictsFileError(
            f"{path}: verdicts schema_version {doc.get('schema_version')!r}, this perfgate reads {SCHEMA_VERSION}")
    try:
        return VerdictsFile.model_validate(doc)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])
        more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise VerdictsFileError(f"{path}: not a valid verdicts file: {problems}{more}") from exc


__all__ = [
    "SCHEMA_VERSION", "BaselineRef", "CaseStatus", "CaseVerdicts", "MetricVerdictRecord", "VerdictName",
    "VerdictsFile", "VerdictsFileError", "load_verdicts",
]
