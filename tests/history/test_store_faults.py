"""Bad input and faults: each is one line naming the store (password redacted) and the cause, a typed error, and
the store exactly as it was (no row lost or half written, nothing overwritten)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from history_support import PG_PASSWORD, run_results
from sqlalchemy import text
from test_store import _count, _writer

from perfgate.history import tables
from perfgate.history.location import HistoryError, NotAHistoryStore, SchemaTooNew, StoreUnavailable
from perfgate.history.store import HistoryStore


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _one_line(exc: HistoryError, store: str) -> str:
    msg = str(exc)
    assert "\n" not in msg and store in msg and PG_PASSWORD not in msg, msg
    return msg


def test_a_corrupt_sqlite_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    before = _digest(path)
    with pytest.raises(NotAHistoryStore) as exc:
        HistoryStore.open(f"sqlite:///{path}")
    assert "not a readable SQLite database" in _one_line(exc.value, str(path))
    assert _digest(path) == before and not Path(f"{path}-wal").exists()


def test_someone_elses_sqlite_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ada')")
    before = _digest(path)
    with pytest.raises(NotAHistoryStore) as exc:
        HistoryStore.open(str(path))
    assert "not a perfgate history" in _one_line(exc.value, str(path))
    assert _digest(path) == before


def test_a_schema_newer_than_this_perfgate_is_refused(store_url: str) -> None:
    with HistoryStore.open(store_url) as store:
        rec = store.record_run(run_results(0), "ok")
        with store.engine.begin() as conn:
            conn.execute(tables.schema_table.insert().values(version=tables.LATEST + 1, applied_at="later",
                                                             perfgate_version="9.0"))
    with pytest.raises(SchemaTooNew) as exc:
        HistoryStore.open(store_url)
    assert f"schema version {tables.LATEST + 1}" in str(exc.value) and "\n" not in str(exc.value)
    assert _count_raw(store_url) == 1 and rec.run_id == 1


def _count_raw(url: str) -> int:
    from sqlalchemy import create_engine

    from perfgate.history.location import normalize

    engine = create_engine(normalize(url))
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM runs")).scalar()
    finally:
        engine.dispose()


def test_an_unreachable_postgresql_is_one_line_with_the_password_redacted() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(StoreUnavailable) as exc:
        HistoryStore.open(f"postgresql://perfgate:{PG_PASSWORD}@127.0.0.1:{port}/history")
    msg = _one_line(exc.value, f"postgresql+psycopg://perfgate:***@127.0.0.1:{port}/history")
    assert "cannot open" in msg


def test_a_refused_login_on_a_real_server_names_the_store_not_the_password(pg_server) -> None:
    with pytest.raises(StoreUnavailable) as exc:
        HistoryStore.open(pg_server.url(password="wrong-" + PG_PASSWORD))
    assert "password authentication failed" in _one_line(exc.value, "perfgate:***@127.0.0.1")


def test_a_store_whose_directory_cannot_be_made_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreUnavailable) as exc:
        HistoryStore.open(f"sqlite:///{tmp_path / 'file' / 'sub' / 'h.sqlite'}")
    assert "cannot create its directory" in str(exc.value)


def test_a_session_killed_mid_write_leaves_no_half_run(store_url: str) -> None:
    HistoryStore.open(store_url).close()
    p = _writer(store_url, 0, 5, kill_at=3)  # nights 0, 1, 2 recorded; killed inside night 3's transaction
    p.communicate(timeout=120)
    assert p.returncode == -9
    assert _count(store_url, tables.runs) == 3 and _count(store_url, tables.trials) == 9
    assert _count(store_url, tables.trial_values) == 3 * 3 * 5
    with HistoryStore.open(store_url) as store:  # the store is fine afterwards, and night 3 can be recorded
        assert store.record_run(run_results(3, test_id="case-0"), "ok").new


def test_a_write_that_fails_midway_is_rolled_back_whole(store_url: str) -> None:
    with HistoryStore.open(store_url) as store:
        store.record_run(run_results(0), "ok")
        bad = run_results(1)
        bad[1] = bad[1].model_copy(update={"trial": 0})  # two trials 0: the trials table's key refuses it
        with pytest.raises(StoreUnavailable) as exc:
            store.record_run(bad, "ok")
        assert "nothing was written" in str(exc.value)
    assert _count(store_url, tables.runs) == 1 and _count(store_url, tables.trials) == 3


def test_a_shared_postgresql_database_gets_the_history_beside_its_tables(pg_server) -> None:
    url = pg_server.create_database()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
        conn.execute("INSERT INTO invoices VALUES (7)")
    with HistoryStore.open(url) as store:
        store.record_run(run_results(0), "ok")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT id FROM invoices").fetchall() == [(7,)]
    with psycopg.connect(url, autocommit=True) as conn:  # a table of ours without perfgate_schema: refused
        conn.execute("DROP TABLE perfgate_schema")
    with pytest.raises(NotAHistoryStore):
        HistoryStore.open(url)
