"""The history store's tables and its ordered migrations (SQLAlchemy Core; one schema for SQLite and PostgreSQL).

``perfgate_schema`` holds one row per migration applied. Opening a store
applies the missing migrations in order, in one transaction, so a store
written by an older perfgate is upgraded in place and never dropped; a store
whose highest migration is newer than :data:`LATEST` is refused untouched.

Migration 1 is the history itself: a ``series`` is what must stay the same to
compare (machine, hardware, engine entry, model entry, scenario, workload,
client); a ``run`` is one case in one session, with the environment that may
change along the series; ``trials`` and ``trial_values`` hold every trial's
summary metrics. Migration 2 adds ``resets``: change points a person accepted
as the new normal (conbench's curated resets).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    select,
)

import perfgate

metadata = MetaData()

schema_table = Table(
    "perfgate_schema", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", String(40), nullable=False),
    Column("perfgate_version", String(40), nullable=False),
)

series = Table(
    "series", metadata,
    Column("id", Integer, primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("case_id", String(300), nullable=False),
    Column("machine", String(200), nullable=False),
    Column("hardware", Text, nullable=False),  # JSON: accelerator, gpu count, CPU model and count
    Column("engine_entry", String(300), nullable=False),
    Column("model_entry", String(300), nullable=False),
    Column("scenario", String(300), nullable=False),
    Column("workload", Text, nullable=False),  # JSON: the workload as compared (judge.baselines.fingerprint)
    Column("client", String(200), nullable=False),
    Column("created_at", String(40), nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("series_id", Integer, ForeignKey("series.id"), nullable=False),
    Column("run_uid", String(64), nullable=False, unique=True),  # the same results recorded twice are one run
    Column("case_id", String(300), nullable=False),
    Column("started_at", String(40), nullable=False),  # ISO-8601 UTC of the first trial
    Column("recorded_at", String(40), nullable=False),
    Column("machine", String(200), nullable=False),
    Column("hostname", String(200)),
    Column("git_commit", String(80)),
    Column("perfgate_version", String(40)),
    Column("engine_id", String(300)),
    Column("engine_kind", String(80)),
    Column("engine_version", String(120)),
    Column("model", String(300)),
    Column("model_revision", String(80)),
    Column("scenario", String(300), nullable=False),
    Column("fingerprint", Text, nullable=False),  # JSON (judge.baselines.fingerprint)
    Column("environment", Text, nullable=False),  # JSON: what may change along the series
    Column("status", String(40), nullable=False),
    Column("source", String(500), nullable=False),  # "session" or "import <dir>"
    Column("n_trials", Integer, nullable=False),
    Index("runs_series_started", "series_id", "started_at"),
)

trials = Table(
    "trials", metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("trial", Integer, primary_key=True, autoincrement=False),
    Column("status", String(40), nullable=False),
    Column("test_id", String(300), nullable=False),
)

trial_values = Table(
    "trial_values", metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("trial", Integer, primary_key=True, autoincrement=False),
    Column("metric", String(200), primary_key=True),
    Column("value", Float, nullable=False),
)

resets = Table(
    "resets", metadata,
    Column("id", Integer, primary_key=True),
    Column("series_id", Integer, ForeignKey("series.id"), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),  # the first run of the new normal
    Column("metric", String(200)),  # None: every metric
    Column("note", Text, nullable=False),
    Column("accepted_at", String(40), nullable=False),
    UniqueConstraint("series_id", "run_id", "metric"),
)

HISTORY_TABLES = (series, runs, trials, trial_values)


def _v1(conn: Connection) -> None:
    for t in HISTORY_TABLES:
        t.create(conn)


def _v2(conn: Connection) -> None:
    resets.create(conn)


MIGRATIONS: tuple[tuple[int, Callable[[Connection], None]], ...] = ((1, _v1), (2, _v2))
LATEST = MIGRATIONS[-1][0]
OWN_TABLES = frozenset(t.name for t in metadata.sorted_tables)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def current_version(conn: Connection) -> int | None:
    """The store's schema version; None for a database to create it in; -1 for one that is not ours to write:
    a SQLite file holding other tables, or any database holding tables of our names without perfgate_schema.
    (A PostgreSQL database shared with other applications' tables is fine: ours are created beside them.)"""
    names = set(inspect(conn).get_table_names())
    if schema_table.name not in names:
        foreign = names & OWN_TABLES or (names and conn.dialect.name == "sqlite")
        return -1 if foreign else None
    return conn.execute(select(schema_table.c.version).order_by(schema_table.c.version.desc())).scalar() or 0


def migrate(conn: Connection, found: int | None, upto: int = LATEST) -> list[int]:
    """Apply migrations after ``found`` up to ``upto`` inside the caller's transaction; the versions applied."""
    if found is None:
        schema_table.create(conn)
        found = 0
    applied = []
    for version, step in MIGRATIONS:
        if found < version <= upto:
            step(conn)
            conn.execute(schema_table.insert().values(version=version, applied_at=now(),
                                                      perfgate_version=perfgate.__version__))
            applied.append(version)
    return applied
