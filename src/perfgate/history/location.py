"""Where the history store lives, how it is named in messages, and the one error type it raises.

A store is chosen by URL, like any SQLAlchemy database: the ``--perf-history
URL`` option (wired by the plugin), else ``$PERFGATE_HISTORY``, else a SQLite
file under the perfgate cache (``$PERFGATE_CACHE`` or ``~/.cache/perfgate``),
so a machine's second run already has its first to compare with. A plain path
is a SQLite file; ``postgresql://`` (psycopg 3) is a fleet's shared store.
Every message names the store with its password redacted.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

ENV_VAR = "PERFGATE_HISTORY"
FILE_NAME = "history.sqlite"


class HistoryError(Exception):
    """The history store cannot be used; ``str()`` is one line naming the store (redacted) and the cause."""

    def __init__(self, store: str, cause: str) -> None:
        self.store, self.cause = store, cause
        super().__init__(f"history store {store}: {cause}")


class StoreUnavailable(HistoryError):
    """The store cannot be reached or opened (server down, refused login, unwritable directory)."""


class NotAHistoryStore(HistoryError):
    """The file or database is corrupt, or holds something else than a perfgate history."""


class SchemaTooNew(HistoryError):
    """The store was written by a newer perfgate: left untouched, never downgraded."""


def cache_dir() -> Path:
    """The perfgate cache (same rule as perfgate.engines.provision.default_cache_dir; no import across rooms)."""
    env = os.environ.get("PERFGATE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "perfgate"


def default_url() -> str:
    return f"sqlite:///{cache_dir() / FILE_NAME}"


def resolve_url(option: str | None = None, environ: dict[str, str] | None = None) -> str:
    """The store's URL: the option, else ``$PERFGATE_HISTORY``, else the cache's SQLite file.

    A value without ``://`` is a SQLite file path (``~`` expanded); ``postgresql://`` and
    ``postgres://`` use psycopg 3.
    """
    env = os.environ if environ is None else environ
    value = option or env.get(ENV_VAR) or default_url()
    return normalize(value)


def normalize(value: str) -> str:
    if "://" not in value:
        return f"sqlite:///{Path(value).expanduser().resolve()}"
    scheme, rest = value.split("://", 1)
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return value


def parse(url: str) -> URL:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except ArgumentError as exc:
        raise StoreUnavailable(redact(url), f"not a database URL ({exc})") from None


def redact(url: str | URL) -> str:
    """The URL as messages show it: the password replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return url.render_as_string(hide_password=True)
