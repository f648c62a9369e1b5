"""Hooks a conftest.py or a plugin implements to add to what perfgate records (docs/architecture.md).

Registered by the plugin's ``pytest_addhooks``; both are called for every trial, where its result is
built and before it is written, so what they add is in the result file, in a baseline written from
it, and (machine info) in the fingerprint a stored comparison checks. Like pytest-benchmark's
``pytest_benchmark_update_machine_info``: plain functions, no pytest import needed to declare them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only; pytest resolves hooks by name
    from perfgate.schema.result import Result


def pytest_perfgate_update_machine_info(config, result: Result, machine_info: dict) -> None:
    """Add to ``machine_info`` what makes this machine's numbers what they are and perfgate does not detect
    (a BIOS setting, a kernel, a container image, the power profile).

    Values must be JSON scalars (str, int, float, bool, None). They are recorded in
    ``result.environment.machine_info`` and are part of the baseline fingerprint: a stored comparison
    whose machine info differs is NOT COMPARED, never read as a regression.
    """


def pytest_perfgate_extra_metrics(config, result: Result) -> dict[str, float] | None:
    """Metrics to add to the trial's summary (e.g. the power drawn, read from the machine's own meter).

    Return ``{name: value}`` (or None). They are recorded beside the measured metrics and kept in a
    baseline like them; a name perfgate measured itself is refused, never overwritten.
    """
