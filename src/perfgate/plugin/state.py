"""The plugin's one piece of state: the session's :class:`~perfgate.session.PerfSession`, in ``config.stash``."""

from __future__ import annotations

import pytest

from perfgate.session import PerfSession

STASH = pytest.StashKey[PerfSession]()


def perf_session_of(config: pytest.Config) -> PerfSession:
    return config.stash[STASH]
