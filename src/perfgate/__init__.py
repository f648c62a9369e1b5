"""perfgate: performance regression testing for LLM serving engines.

The names below are the public API, the ones ``pip install perfgate`` users
need (docs/api.md says what each is for); every other module is an
implementation detail that may change between releases. They load on first
use (PEP 562), so importing perfgate, as pytest does for the plugin, stays
light.
Their types are in ``__init__.pyi`` for type checkers (this module only names them).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC: dict[str, str] = {
    # a run: what it was asked, one case's outcome and its gate
    "Settings": "perfgate.session.settings",
    "PerfSession": "perfgate.session.run",
    "CaseOutcome": "perfgate.session.outcome",
    "CaseFailed": "perfgate.session.outcome",
    # the documents and their readers
    "Result": "perfgate.schema.result",
    "read_result": "perfgate.schema.result",
    "iter_results": "perfgate.schema.result",
    "ResultError": "perfgate.schema.result",
    "SaturationResult": "perfgate.schema.result",
    "read_saturation": "perfgate.schema.result",
    "VerdictsFile": "perfgate.schema.verdict",
    "CaseVerdict": "perfgate.schema.verdict",
    "MetricVerdict": "perfgate.schema.verdict",
    "Judgement": "perfgate.schema.verdict",
    "load_verdicts": "perfgate.schema.verdict",
    "VerdictsFileError": "perfgate.schema.verdict",
    "FaultClass": "perfgate.schema.status",
    "status_group": "perfgate.schema.status",
    "count_statuses": "perfgate.schema.status",
    # the report
    "render_report": "perfgate.report.render",
    # statistics: pure functions, figures in, verdicts out
    "JudgePolicy": "perfgate.judge.verdict",
    "judge_against_baseline": "perfgate.judge.verdict",
    "SequentialPlan": "perfgate.judge.sequential",
    "judge_live": "perfgate.judge.sequential",
    "HistoryPolicy": "perfgate.judge.changepoint",
    "judge_history": "perfgate.judge.changepoint",
    # the history store
    "HistoryStore": "perfgate.history.store",
    "HistoryError": "perfgate.history.location",
    # the reference engine (a test instrument with exactly known timing)
    "SimConfig": "perfgate.sim",
    "build_app": "perfgate.sim",
}

__all__ = ["__version__", *_PUBLIC]

def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'perfgate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
