"""The engine adapters, loaded by kind from the ``perfgate.engines`` entry-point group.

An entry point names an adapter class (instantiated with no arguments) or an adapter object.
It is imported only when a matrix engine of its kind is resolved, and checked against
:class:`~perfgate.engines.base.EngineAdapter`; an adapter that fails to import or does not fit
is an :class:`AdapterLoadError` naming the package that registered it, so a broken third-party
engine is reported as that package's problem, in one line.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint

from perfgate._engine_kinds import ENTRY_POINT_GROUP, EXTERNAL, engine_kinds, registrations
from perfgate._suggest import did_you_mean
from perfgate.engines.base import EngineAdapter, protocol_members


class UnknownEngineError(ValueError):
    """No adapter is registered for an engine kind."""


class AdapterLoadError(RuntimeError):
    """A registered adapter could not be loaded or does not provide what perfgate reads."""


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    package = f"package {dist.name} {dist.version}" if dist is not None else "perfgate (built in)"
    return f"{package}, entry point {ep.name} = {ep.value} in group {ENTRY_POINT_GROUP}"


def _missing(adapter: object) -> list[str]:
    """The Protocol members ``adapter`` lacks (an empty list: it fits)."""
    return [name for name in protocol_members() if not hasattr(adapter, name)]


def load_adapter(ep: EntryPoint) -> EngineAdapter:
    """Import one registration and check it; :class:`AdapterLoadError` names its package on any failure."""
    try:
        target = ep.load()
        adapter = target() if isinstance(target, type) else target
    except Exception as exc:
        raise AdapterLoadError(f"engine kind {ep.name!r} failed to load ({_origin(ep)}): "
                               f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
    missing = _missing(adapter)
    if missing or not isinstance(adapter, EngineAdapter):
        raise AdapterLoadError(f"engine kind {ep.name!r} ({_origin(ep)}) is not an engine adapter: "
                               f"it lacks {', '.join(missing)} (perfgate.engines.base.EngineAdapter)")
    if adapter.name != ep.name:
        raise AdapterLoadError(f"engine kind {ep.name!r} ({_origin(ep)}) loads an adapter named "
                               f"{adapter.name!r}: results would record another kind than the matrix names")
    return adapter


@cache
def get_adapter(kind: str) -> EngineAdapter:
    """The adapter for ``kind`` (loaded once); the kinds registered are listed when it is unknown."""
    found = registrations().get(kind)
    if not found:
        known = [k for k in engine_kinds() if k != EXTERNAL]
        raise UnknownEngineError(f"unknown engine kind {kind!r}{did_you_mean(kind, known)}")
    if len(found) > 1:
        raise AdapterLoadError(f"engine kind {kind!r} is registered more than once: "
                               + "; ".join(_origin(ep) for ep in found))
    return load_adapter(found[0])


def adapter_kinds() -> tuple[str, ...]:
    """The kinds with an adapter (every kind but ``external``)."""
    return tuple(k for k in engine_kinds() if k != EXTERNAL)
