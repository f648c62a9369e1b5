"""The ``; did you mean 'x'?`` hint the one-line errors about a name use (the matrix, options, engine kinds)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: object, known: Iterable[object], label: str = "known") -> str:
    """``; did you mean 'x'?`` for a near miss, else ``; <label>: a, b`` (nothing when nothing is known)."""
    names = [str(k) for k in known]
    close = difflib.get_close_matches(str(word), names, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; {label}: {', '.join(names)}" if names else ""
