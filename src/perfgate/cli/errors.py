"""How a ``perfgate`` command refuses: one exception, printed as ``perfgate: MESSAGE`` with exit status 2.

Raised anywhere in a command (a bad option, a matrix that does not load, an
endpoint that cannot be used); :func:`perfgate.cli.main` alone turns it into
the line on stderr and the status, so no command prints and returns 2 itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

EXIT_USAGE = 2  # a run refused before it measured anything (as argparse's own errors)


class CliError(Exception):
    """A command refused: the message is the whole report (``perfgate:`` is put in front of it)."""


@contextmanager
def refusing(*errors: type[Exception], prefix: str = "", first_line: bool = False) -> Iterator[None]:
    """The domain errors a command expects (a bad matrix, a failed install) become its refusal.

    ``first_line``: keep only the message's first line (a pydantic validation error runs on for lines).
    """
    try:
        yield
    except errors as exc:
        message = f"{prefix}{exc}"
        raise CliError(message.splitlines()[0] if first_line and message else message) from exc
