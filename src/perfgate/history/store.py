"""The history store: every session's runs, one transaction per run, on SQLite or PostgreSQL.

Usage (what a session does once per case)::

    store = HistoryStore.open(resolve_url(option))      # HistoryError: one line naming the store and the cause
    rec = store.record_run(outcome.results, outcome.status, engine_entry=case.engine.id,
                           model_entry=case.model.name)
    series = store.series(rec.series_id)                # runs oldest -> newest, accepted resets
    regressions = judge_history(series.runs, policy, resets=series.resets)

SQLite (the default, a file in the perfgate cache) runs in WAL mode with a
busy timeout, and every write is ``BEGIN IMMEDIATE``: two sessions writing at
once wait for each other instead of failing or interleaving. PostgreSQL takes
a transaction-scoped advisory lock for the same effect. A run is written in
one transaction, so an interrupted session leaves the run absent, never half
written; recording the same results again finds the run already there.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from perfgate.history import keys
from perfgate.history import tables as t
from perfgate.history.location import (
    HistoryError,
    NotAHistoryStore,
    SchemaTooNew,
    StoreUnavailable,
    normalize,
    parse,
    redact,
    resolve_url,
)
from perfgate.judge.history_run import HistoryRun
from perfgate.schema.result import Result

_PG_LOCK = 0x70657266  # "perf": the advisory lock every writer takes on PostgreSQL
BUSY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RecordedRun:
    run_id: int
    series_id: int
    new: bool  # False: these results were recorded before (nothing written)


@dataclass(frozen=True)
class SeriesInfo:
    id: int
    case_id: str
    machine: str
    engine_entry: str
    model_entry: str
    scenario: str
    hardware: str
    n_runs: int
    first: str | None
    last: str | None


@dataclass
class Series:
    info: SeriesInfo
    runs: list[HistoryRun]  # oldest -> newest
    resets: dict[str | None, int] = field(default_factory=dict)  # metric (None: all) -> first run of the new normal


def _cause(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return " ".join(str(orig).split()) or type(orig).__name__


class HistoryStore:
    """One open store. ``HistoryStore.open(url)`` checks, creates or upgrades it; ``close()`` releases it."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine, self.name = engine, name
        self.postgres = engine.dialect.name == "postgresql"

    # ---- opening ------------------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | None = None) -> HistoryStore:
        """Open the store at ``url`` (default: :func:`resolve_url`), creating or migrating it.

        Raises :class:`StoreUnavailable` (cannot connect or create), :class:`NotAHistoryStore` (corrupt file,
        someone else's database) or :class:`SchemaTooNew`; each leaves the store exactly as it was.
        """
        parsed = parse(normalize(url) if url else resolve_url())
        name = redact(parsed)
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(parsed, name)
        elif parsed.get_backend_name() == "postgresql":
            engine = create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True,
                                   connect_args={"connect_timeout": 10})
        else:
            raise StoreUnavailable(name, f"unsupported backend {parsed.get_backend_name()!r} (sqlite or postgresql)")
        store = cls(engine, name)
        try:
            store._prepare()
        except BaseException:
            engine.dispose()
            raise
        return store

    def _prepare(self) -> None:
        try:
            with self.engine.connect() as conn:
                found = t.current_version(conn)
            self._check(found)
            if found != t.LATEST:
                with self._write() as conn:
                    found = t.current_version(conn)  # another session may have migrated meanwhile
                    self._check(found)
                    t.migrate(conn, found)
            if not self.postgres:
                raw = self.engine.raw_connection()  # outside a transaction: SQLite refuses it inside one
                try:
                    raw.cursor().execute("PRAGMA journal_mode=WAL")
                finally:
                    raw.close()
        except HistoryError:
            raise
        except DBAPIError as exc:
            if not self.postgres and ("not a database" in str(exc.orig) or "malformed" in str(exc.orig)):
                raise NotAHistoryStore(self.name, f"not a readable SQLite database ({_cause(exc)}); "
                                       "left untouched: move it away to start a new history") from None
            raise StoreUnavailable(self.name, f"cannot open ({_cause(exc)})") from None
        except SQLAlchemyError as exc:
            raise StoreUnavailable(self.name, f"cannot open ({_cause(exc)})") from None

    def _check(self, found: int | None) -> None:
        if found == -1:
            raise NotAHistoryStore(self.name, "holds other tables and no perfgate_schema: not a perfgate history "
                                   "(left untouched)")
        if found is not None and found > t.LATEST:
            raise SchemaTooNew(self.name, f"schema version {found} was written by a newer perfgate; this one "
                               f"knows up to {t.LATEST} (left untouched: upgrade perfgate)")

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_version(self) -> int:
        with self._read() as conn:
            return t.current_version(conn) or 0

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction, serialized with every other writer of this store."""
        with self.engine.connect() as conn:
            conn.execution_options(history_write=True)
            with conn.begin():
                if self.postgres:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreUnavailable(self.name, f"read failed ({_cause(exc)})") from None

    # ---- writing ------------------------------------------------------------------------------------

    def record_run(self, results: Sequence[Result], status: str, *, case_id: str | None = None,
                   engine_entry: str | None = None, model_entry: str | None = None, source: str = "session",
                   recorded_at: str | None = None) -> RecordedRun:
        """Record one case's trials (its Result objects) and its status as one run, in one transaction."""
        if not results:
            raise ValueError("record_run needs at least one Result")
        first = min(results, key=lambda r: r.trial)
        key = keys.series_key(first, engine_entry, model_entry)
        env = first.environment
        uid = keys.run_uid(results)
        case = case_id or first.test_id
        try:
            with self._write() as conn:
                existing = conn.execute(select(t.runs.c.id, t.runs.c.series_id).where(t.runs.c.run_uid == uid)).first()
                if existing:
                    return RecordedRun(existing.id, existing.series_id, new=False)
                series_id = self._series_id(conn, key, case)
                run_id = conn.execute(t.runs.insert().values(
                    series_id=series_id, run_uid=uid, case_id=case,
                    started_at=min(r.environment.started_at for r in results), recorded_at=recorded_at or t.now(),
                    machine=key.machine, hostname=env.hostname, git_commit=env.git_commit,
                    perfgate_version=env.perfgate_version, engine_id=engine_entry or key.engine_entry,
                    engine_kind=env.engine.name, engine_version=env.engine.version, model=env.model,
                    model_revision=env.software.model_revision if env.software else None, scenario=first.scenario,
                    fingerprint=keys.fingerprint_json(first), environment=json.dumps(keys.environment_of(first)),
                    status=status, source=source, n_trials=len(results))).inserted_primary_key[0]
                conn.execute(t.trials.insert(), [dict(run_id=run_id, trial=r.trial, status=r.status,
                                                      test_id=r.test_id) for r in results])
                values = [dict(run_id=run_id, trial=r.trial, metric=m, value=float(v))
                          for r in results if r.summary for m, v in sorted(r.summary.metrics.items())
                          if v is not None and math.isfinite(v)]
                if values:
                    self._insert_values(conn, values)
                return RecordedRun(run_id, series_id, new=True)
        except HistoryError:
            raise
        except SQLAlchemyError as exc:
            raise StoreUnavailable(self.name, f"run of {case} not recorded ({_cause(exc)}); nothing was written") \
                from None

    def _insert_values(self, conn: Connection, values: list[dict]) -> None:
        conn.execute(t.trial_values.insert(), values)

    def _series_id(self, conn: Connection, key: keys.SeriesKey, case: str) -> int:
        sid = conn.execute(select(t.series.c.id).where(t.series.c.key_hash == key.hash)).scalar()
        if sid is not None:
            return sid
        return conn.execute(t.series.insert().values(
            key_hash=key.hash, case_id=case, machine=key.machine, hardware=key.hardware,
            engine_entry=key.engine_entry, model_entry=key.model_entry, scenario=key.scenario,
            workload=key.workload, client=key.client, created_at=t.now())).inserted_primary_key[0]

    def set_status(self, run_id: int, status: str) -> None:
        """The run's final status, once the gate on history has spoken (the run itself stays as written)."""
        try:
            with self._write() as conn:
                conn.execute(t.runs.update().where(t.runs.c.id == run_id).values(status=status))
        except SQLAlchemyError as exc:
            raise StoreUnavailable(self.name, f"status of run {run_id} not recorded ({_cause(exc)})") from None

    def accept(self, run_id: int, metric: str | None = None, note: str = "") -> bool:
        """Accept the change that begins at ``run_id`` as the new normal (for ``metric``, or all): later judging
        starts there. False when it was already accepted (nothing written twice)."""
        try:
            with self._write() as conn:
                sid = conn.execute(select(t.runs.c.series_id).where(t.runs.c.id == run_id)).scalar()
                if sid is None:
                    raise HistoryError(self.name, f"no run {run_id}")
                dup = conn.execute(select(t.resets.c.id).where(
                    t.resets.c.series_id == sid, t.resets.c.run_id == run_id,
                    t.resets.c.metric.is_(None) if metric is None else t.resets.c.metric == metric)).first()
                if dup:
                    return False
                conn.execute(t.resets.insert().values(series_id=sid, run_id=run_id, metric=metric, note=note,
                                                      accepted_at=t.now()))
                return True
        except IntegrityError:
            return False
        except SQLAlchemyError as exc:
            raise StoreUnavailable(self.name, f"accept not recorded ({_cause(exc)})") from None

    # ---- reading ------------------------------------------------------------------------------------

    def list_series(self, case_id: str | None = None) -> list[SeriesInfo]:
        s, r = t.series, t.runs
        q = (select(s, func.count(r.c.id).label("n"), func.min(r.c.started_at).label("first"),
                    func.max(r.c.started_at).label("last"))
             .select_from(s.outerjoin(r, r.c.series_id == s.c.id)).group_by(s.c.id).order_by(s.c.case_id, s.c.id))
        if case_id is not None:
            q = q.where(s.c.case_id == case_id)
        with self._read() as conn:
            return [SeriesInfo(row.id, row.case_id, row.machine, row.engine_entry, row.model_entry, row.scenario,
                               row.hardware, row.n, row.first, row.last) for row in conn.execute(q)]

    def find_series(self, key: keys.SeriesKey) -> int | None:
        """The id of ``key``'s series (:func:`perfgate.history.keys.series_key`); None before its first run."""
        with self._read() as conn:
            return conn.execute(select(t.series.c.id).where(t.series.c.key_hash == key.hash)).scalar()

    def trials_of(self, run_ids: Sequence[int]) -> dict[int, tuple[dict, list[dict[str, float]]]]:
        """Per run: its fingerprint and its ok trials' metrics (what a stored baseline holds, for judging)."""
        r, tr, v = t.runs, t.trials, t.trial_values
        with self._read() as conn:
            fps = dict(conn.execute(select(r.c.id, r.c.fingerprint).where(r.c.id.in_(list(run_ids)))).all())
            rows = conn.execute(
                select(v.c.run_id, v.c.trial, v.c.metric, v.c.value)
                .select_from(v.join(tr, (tr.c.run_id == v.c.run_id) & (tr.c.trial == v.c.trial)))
                .where(v.c.run_id.in_(list(run_ids)), tr.c.status == "ok")
                .order_by(v.c.run_id, v.c.trial)).all()
        per: dict[int, dict[int, dict[str, float]]] = defaultdict(dict)
        for run_id, trial, metric, value in rows:
            per[run_id].setdefault(trial, {})[metric] = float(value)
        return {i: (json.loads(fps[i]), list(per[i].values())) for i in run_ids if i in fps}

    def series(self, series_id: int, last: int | None = None) -> Series:
        """The series' runs, oldest -> newest (``last``: only the newest that many); a run's value of a metric is
        the median of its ok trials."""
        infos = {i.id: i for i in self.list_series()}
        if series_id not in infos:
            raise HistoryError(self.name, f"no series {series_id}")
        r, tr, v = t.runs, t.trials, t.trial_values
        with self._read() as conn:
            q = select(r).where(r.c.series_id == series_id).order_by(r.c.started_at.desc(), r.c.id.desc())
            rows = conn.execute(q.limit(last) if last else q).all()[::-1]
            first = (rows[0].started_at, rows[0].id) if rows else ("", 0)
            vals = conn.execute(
                select(v.c.run_id, v.c.metric, v.c.value)
                .select_from(v.join(tr, (tr.c.run_id == v.c.run_id) & (tr.c.trial == v.c.trial))
                             .join(r, r.c.id == v.c.run_id))
                .where(r.c.series_id == series_id, tr.c.status == "ok",
                       (r.c.started_at > first[0]) | ((r.c.started_at == first[0]) & (r.c.id >= first[1])))).all()
            rs = conn.execute(select(t.resets).where(t.resets.c.series_id == series_id)
                              .order_by(t.resets.c.id)).all()
        per_run: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for run_id, metric, value in vals:
            per_run[run_id][metric].append(value)
        runs = [HistoryRun(run_id=row.id, started_at=row.started_at, status=row.status,
                           values={m: float(statistics.median(xs)) for m, xs in sorted(per_run[row.id].items())},
                           environment=json.loads(row.environment)) for row in rows]
        order = {run.run_id: i for i, run in enumerate(runs)}
        resets: dict[str | None, int] = {}
        for row in rs:  # the latest reset (in series order) per metric wins
            if row.metric not in resets or order.get(row.run_id, -1) > order.get(resets[row.metric], -1):
                resets[row.metric] = row.run_id
        return Series(infos[series_id], runs, resets)

    def trial_rows(self, series_id: int) -> list[tuple[int, str, int, str, str, float]]:
        """(run id, started_at, trial, trial status, metric, value) for export, oldest first."""
        r, tr, v = t.runs, t.trials, t.trial_values
        q = (select(r.c.id, r.c.started_at, v.c.trial, tr.c.status, v.c.metric, v.c.value)
             .select_from(v.join(tr, (tr.c.run_id == v.c.run_id) & (tr.c.trial == v.c.trial))
                          .join(r, r.c.id == v.c.run_id))
             .where(r.c.series_id == series_id).order_by(r.c.started_at, r.c.id, v.c.trial, v.c.metric))
        with self._read() as conn:
            return [tuple(row) for row in conn.execute(q)]


def _sqlite_engine(url, name: str) -> Engine:
    path = url.database
    if path and path != ":memory:":
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(name, f"cannot create its directory ({exc.strerror})") from None
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # transactions are ours (below), not the driver's implicit ones
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("history_write") else "BEGIN")

    return engine
