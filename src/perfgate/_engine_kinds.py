"""The engine kinds a matrix may name, read from the ``perfgate.engines`` entry-point group.

A package adds an engine by registering an adapter under this group (docs/architecture.md,
"Extension seams"); perfgate registers its own adapters the same way. Only names and targets
are read here, from distribution metadata, with nothing imported: the matrix (config) checks a
kind without importing the engines room that loads the adapters
(:mod:`perfgate.engines.registry`).
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

ENTRY_POINT_GROUP = "perfgate.engines"

BUILTIN: dict[str, str] = {
    "vllm": "perfgate.engines.vllm:VllmAdapter",
    "sglang": "perfgate.engines.sglang:SglangAdapter",
    "sim": "perfgate.engines.sim:SimAdapter",
}
"""perfgate's own registrations, as pyproject.toml declares them: used as well as the installed
metadata, so a checkout run from source (or an install made before the group existed) knows them."""

EXTERNAL = "external"
"""The kind with no adapter: an endpoint perfgate did not start (nothing booted)."""


@cache  # a scan of every installed distribution (~10 ms); what is installed does not change during a run
def registrations() -> dict[str, list[EntryPoint]]:
    """Every registration per kind, the built-in ones first; one target named twice counts once."""
    found: dict[str, list[EntryPoint]] = {
        name: [EntryPoint(name, value, ENTRY_POINT_GROUP)] for name, value in BUILTIN.items()
    }
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        same = found.setdefault(ep.name, [])
        if all(other.value != ep.value for other in same):
            same.append(ep)
        elif ep.name in BUILTIN and len(same) == 1 and getattr(ep, "dist", None) is not None:
            same[0] = ep  # perfgate's own installed registration: the same target, and it names its package
    return found


def engine_kinds() -> tuple[str, ...]:
    """The kinds a matrix engine may have: every registered adapter, and ``external``."""
    return (*sorted(registrations()), EXTERNAL)
