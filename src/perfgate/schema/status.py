"""Faults, statuses and the groups they are counted in: one vocabulary, as types, for every room.

A fault class is the one word a failure line starts with (docs/faults.md); it
travels as :attr:`perfgate.schema.result.Result.fault` and
``ServerError.kind``, never as a prefix parsed back out of a reason string.
Trial and case statuses are the ``Literal`` types the documents validate;
:data:`STATUS_GROUPS` says which group each case status is counted in, and
:func:`count_statuses` is the one count the terminal summary and the report
share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Literal


class FaultClass(StrEnum):
    """What went wrong with a case, most severe first (iteration order is severity order).

    String-valued, so result files and failure lines carry the same words as before the type existed.
    """

    ENGINE_CRASHED = "engine crashed"  # the engine process is gone
    ENGINE_HUNG = "engine hung"  # no complete answer in time: a stuck engine (or one far too slow)
    BOOT_TIMEOUT = "boot timeout"  # never became ready
    SERVER_ERROR = "server error"  # it answered, wrongly (5xx, a broken stream, garbage)
    THROTTLED = "throttled"  # 429, or 503 (a KServe activator, a gateway): refused for load, counted as a rate
    CLIENT_ERROR = "client error"  # it refused the request (4xx): the engine is fine


TrialStatus = Literal["ok", "failed", "client_bound", "workload_not_delivered"]
"""A trial's status (``Result.status``)."""

JudgementStatus = Literal["ok", "regression", "no_baseline", "env_mismatch", "not_comparable", "not_judged"]
"""The judge's own answer for a case, before run failures are considered."""

CaseStatus = Literal["ok", "regression", "inconclusive", "failed", "client_bound", "no_baseline", "env_mismatch", "not_comparable",
                     "baseline_written", "not_judged", "reference",  # reference: the A side of a live A/B
                     "workload_not_delivered", "slo_violated",
                     "skipped"]  # skipped: not run on this machine (no GPU, too few GPUs), counted and shown
"""A case's status as recorded in verdicts.json (precedence: :func:`perfgate.schema.verdict.case_status`)."""

UNUSABLE: frozenset[TrialStatus] = frozenset({"failed", "client_bound", "workload_not_delivered"})
"""Trial (and case) statuses whose numbers are not worth judging or showing: the case fails with the reason."""

NOT_COMPARED: frozenset[CaseStatus] = frozenset({"no_baseline", "env_mismatch", "not_comparable"})
"""A case that ran but was compared with nothing: passes with a note, fails under --perf-strict."""

UNANSWERED: frozenset[CaseStatus] = NOT_COMPARED | {"inconclusive"}
"""A case that ran but did not answer its question (compared nothing, or undecided): passes with a note, fails
under --perf-strict."""


class StatusGroup(StrEnum):
    """The groups the summary line and the report count cases in."""

    COMPARED = "compared"  # judged against a reference and decided: ok or regression
    INCONCLUSIVE = "inconclusive"  # judged against a reference, undecided at the trials or blocks it had
    NOT_COMPARED = "not_compared"  # ran, compared with nothing (no baseline, env mismatch, not judged)
    FAILED = "failed"  # no usable numbers, or an absolute SLO missed
    BASELINE_WRITTEN = "baseline_written"
    REFERENCE = "reference"  # the A side of a live A/B: not a case of its own
    SKIPPED = "skipped"  # not run on this machine


STATUS_GROUPS: Mapping[CaseStatus, StatusGroup] = MappingProxyType({
    "ok": StatusGroup.COMPARED,
    "regression": StatusGroup.COMPARED,
    "inconclusive": StatusGroup.INCONCLUSIVE,
    "no_baseline": StatusGroup.NOT_COMPARED,
    "env_mismatch": StatusGroup.NOT_COMPARED,
    "not_comparable": StatusGroup.NOT_COMPARED,
    "not_judged": StatusGroup.NOT_COMPARED,
    "failed": StatusGroup.FAILED,
    "client_bound": StatusGroup.FAILED,
    "workload_not_delivered": StatusGroup.FAILED,
    "slo_violated": StatusGroup.FAILED,
    "baseline_written": StatusGroup.BASELINE_WRITTEN,
    "reference": StatusGroup.REFERENCE,
    "skipped": StatusGroup.SKIPPED,
})
"""Every case status's group (tests/unit/test_report.py checks that none is left out)."""


def status_group(status: CaseStatus) -> StatusGroup:
    return STATUS_GROUPS[status]


@dataclass(frozen=True)
class StatusCounts:
    """How many cases ended in each group (``cases``: cases run here, without the skipped and the A sides)."""

    cases: int = 0
    compared: int = 0
    regression: int = 0  # of the compared
    inconclusive: int = 0  # compared but undecided: neither a regression nor "no change" could be shown
    not_compared: int = 0
    no_baseline: int = 0  # of the not compared
    failed: int = 0
    baseline_written: int = 0
    skipped: int = 0


def count_statuses(statuses: Iterable[CaseStatus]) -> StatusCounts:
    """The one count of case statuses, shared by the session's summary line and the report."""
    groups: dict[StatusGroup, int] = dict.fromkeys(StatusGroup, 0)
    regression = no_baseline = 0
    for s in statuses:
        groups[STATUS_GROUPS[s]] += 1
        regression += s == "regression"
        no_baseline += s == "no_baseline"
    run = sum(n for g, n in groups.items() if g not in (StatusGroup.SKIPPED, StatusGroup.REFERENCE))
    return StatusCounts(cases=run, compared=groups[StatusGroup.COMPARED], regression=regression,
                        inconclusive=groups[StatusGroup.INCONCLUSIVE], not_compared=groups[StatusGroup.NOT_COMPARED], no_baseline=no_baseline,
                        failed=groups[StatusGroup.FAILED], baseline_written=groups[StatusGroup.BASELINE_WRITTEN],
                        skipped=groups[StatusGroup.SKIPPED])
