"""Hooks a conftest.py or a plugin implements to add to what perfgate records (docs/architecture.md).

Registered by the plugin's ``pytest_addhooks``; both are called for every trial, where its result is
built and before it is written, so what they add is in the result file, in a baseline written from
it, and (machine info) in the fingerprint a stored comparison checks. Like pytest-benchmark's
``pytest_benchmark_update_machine_info``: plain functions, no pytest import needed to declare them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from perfgate.schema.result import Result

_SCALARS = (str, int, float, bool, type(None))


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


# What the plugin does with the answers: the rules above, kept beside the hooks they belong to.

def record_machine_info(result: Result, machine_info: Mapping[str, object]) -> None:
    """Store what the update hooks left in ``machine_info``; a value a fingerprint cannot compare is refused."""
    bad = {k: v for k, v in machine_info.items() if not isinstance(k, str) or not isinstance(v, _SCALARS)}
    if bad:
        raise ValueError(f"pytest_perfgate_update_machine_info: values must be str, int, float, bool or None "
                         f"(a fingerprint compares them), not {bad!r}")
    result.environment.machine_info = dict(machine_info)  # type: ignore[arg-type]


def add_extra_metrics(result: Result, answers: Iterable[Mapping[str, float] | None]) -> None:
    """Add each extra-metrics hook's answer to the summary; a name perfgate measured is refused."""
    if result.summary is None:  # a trial that produced no summary has nothing to add to
        return
    measured = result.summary.metrics
    for extra in answers:
        for name, value in (extra or {}).items():
            if name in measured:
                raise ValueError(f"pytest_perfgate_extra_metrics: {name!r} is a metric perfgate measured; "
                                 "an extra metric needs a name of its own")
            measured[name] = None if value is None else float(value)
