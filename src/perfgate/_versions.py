"""The one order of version strings: as versions (0.9 before 0.10), wherever versions are sorted.

Engine versions come from engines and from file names; "0.10.0" sorted as text lands before "0.9.0",
so an upgrade table or a baseline list would read newest-first in places and oldest-first in others.
"""

from __future__ import annotations

from packaging.version import InvalidVersion, Version


def version_key(v: str | None) -> tuple:
    """Sort key: PEP 440 versions in version order, then anything else (``unknown``, a git hash)
    alphabetically, then None."""
    if v is None:
        return (2, Version("0"), "")
    try:
        return (0, Version(v), v)
    except InvalidVersion:
        return (1, Version("0"), v)
