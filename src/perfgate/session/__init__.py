"""The session: runs each case's trials, decides what to compare them with, and keeps the outcomes.

A case is N trials (one complete load run each). Per-trial summaries, never
pooled per-request samples, feed the verdict, because requests within one
trial share the same engine state and are not independent.

The session owns everything with side effects around the pure judge
(:mod:`perfgate.judge.verdict`), one job per module:

* :mod:`~perfgate.session.settings` - what the run was asked to do, and the A/B reference of a case;
* :mod:`~perfgate.session.outcome` - a case's outcome (a value), the gate's pass/fail line, its verdicts.json entries;
* :mod:`~perfgate.session.trials` - running trials, ending a case whose engine crashed or hung;
* :mod:`~perfgate.session.stored` - the stored-baseline workflow (lookup, judge, confirm, write);
* :mod:`~perfgate.session.saturation` - a saturation scenario's search;
* :mod:`~perfgate.session.live_ab` - a live A/B against another engine booted in the same session;
* :mod:`~perfgate.session.history` - the history store: every case recorded, a suite case judged on its history;
* :mod:`~perfgate.session.results_dir` - the results directory, verdicts.json and the report;
* :mod:`~perfgate.session.run` - :class:`PerfSession`, which sequences them.

It does not import pytest: the plugin turns :class:`CaseFailed` (what
:meth:`CaseOutcome.check` raises when the gate fails) into a one-line failure.
"""

from perfgate.session.outcome import CaseFailed, CaseOutcome, Gate
from perfgate.session.run import PerfSession
from perfgate.session.settings import Settings
from perfgate.session.stored import BASELINE_BOOTS

__all__ = ["BASELINE_BOOTS", "CaseFailed", "CaseOutcome", "Gate", "PerfSession", "Settings"]
