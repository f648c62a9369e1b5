"""One run of a history series as the change point judge sees it (no numerics here: the store imports it cheaply)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class HistoryRun:
    """One run of a series as the judge sees it: a value per metric (the median of its trials)."""

    run_id: int | None
    started_at: str
    values: Mapping[str, float]
    environment: Mapping[str, str | None] = field(default_factory=dict)
    status: str = "ok"


