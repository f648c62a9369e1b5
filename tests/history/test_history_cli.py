"""``perfgate history``: import what sessions left behind, list, show change points, export, accept."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
from history_support import run_results

from perfgate.cli import main
from perfgate.schema.result import write_result

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "report"


def _nights(root: Path, first: int, last: int, step_at: int) -> list[Path]:
    """One results directory per night, as the nightly job leaves them (results/<test>.trialN.result.json)."""
    dirs = []
    for n in range(first, last):
        d = root / f"night-{n:02d}"
        for r in run_results(n, 1.15 if n >= step_at else 1.0, engine_version="0.32.0" if n >= step_at else "0.31.0"):
            write_result(r, d / "results" / f"{r.test_id}.trial{r.trial}.result.json")
        dirs.append(d)
    return dirs


def test_import_show_export_accept(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    h = ["history", "--url", store_url]
    dirs = _nights(tmp_path, 0, 10, 8)
    zipped = tmp_path / "nightly-artifact.zip"
    with zipfile.ZipFile(zipped, "w") as z:  # two later nights, downloaded as one artifact
        for d in _nights(tmp_path / "z", 10, 12, 8):
            for f in d.rglob("*.json"):
                z.write(f, f.relative_to(tmp_path / "z"))
    assert main([*h, "import", *map(str, dirs), str(zipped)]) == 0
    assert "12 run(s) recorded, 0 already" in capsys.readouterr().out
    assert main([*h, "import", str(dirs[0])]) == 0
    assert "0 run(s) recorded, 1 already" in capsys.readouterr().out

    assert main([*h, "list"]) == 0
    assert "#1    sim-tiny-chat  machine box-1  12 run(s)" in capsys.readouterr().out
    assert main([*h, "show", "sim-tiny-chat"]) == 0
    out = capsys.readouterr().out
    assert " *    9  2026-11-01T08:00" in out  # the run the change began in is marked
    assert "REGRESSION: itl_per_token_ms.p50 +15.1% [+14, +16]" in out and "since run 9 (2026-11-01, engine 0.31.0 → 0.32.0)" in out

    assert main([*h, "export", "sim-tiny-chat", "--format", "otava-csv", "--metric", "itl_per_token_ms.p50"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 12 and rows[8]["engine_version"] == "0.32.0" and float(rows[8]["itl_per_token_ms.p50"]) > 5.5
    assert main([*h, "export", "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1 + 12 * 3 * 5
    assert main([*h, "export", "--format", "json"]) == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert doc["case"] == "sim-tiny-chat" and len(doc["runs"]) == 12

    assert main([*h, "accept", "9", "--note", "vllm 0.32.0: new normal"]) == 0
    assert "accepted: every metric from run 9" in capsys.readouterr().out
    assert main([*h, "show", "sim-tiny-chat"]) == 0
    out = capsys.readouterr().out
    assert "REGRESSION" not in out and "accepted: every metric from run 9" in out


def test_the_report_fixtures_import_with_their_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A session's directory as the report reads it: the run's status is the session's verdict."""
    from perfgate.history.store import HistoryStore

    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    assert main(["history", "--url", url, "import", str(FIXTURES / "run")]) == 0
    assert capsys.readouterr().out.startswith("9 run(s) recorded, 0 already")  # every case with result files
    with HistoryStore.open(url) as store:
        statuses = {s.case_id: store.series(s.id).runs[0].status for s in store.list_series()}
    verdicts = {v["case_id"]: v["status"] for v in json.loads((FIXTURES / "run" / "verdicts.json").read_text())["cases"]}
    assert statuses == {k: v for k, v in verdicts.items() if k in statuses}
    assert {"regression", "client_bound", "ok", "no_baseline"} <= set(statuses.values())
    assert main(["history", "--url", url, "import", str(FIXTURES / "gpu"), str(FIXTURES / "run")]) == 0
    assert capsys.readouterr().out.startswith("2 run(s) recorded, 9 already")


def test_an_unusable_store_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "h.sqlite"
    bad.write_bytes(b"\x00garbage" * 100)
    assert main(["history", "--url", str(bad), "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"perfgate: history store sqlite:///{bad}: not a readable")


def test_a_nightly_artifact_of_several_sessions_takes_each_sessions_verdicts(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    """reports/ (the suite) with reports/gpu/ (another session) inside it: each run's status comes from the
    verdicts.json of its own session directory."""
    import shutil

    root = tmp_path / "reports"
    shutil.copytree(FIXTURES / "run", root)
    shutil.copytree(FIXTURES / "gpu", root / "gpu")
    url = f"sqlite:///{tmp_path / 'h.sqlite'}"
    assert main(["history", "--url", url, "import", str(root)]) == 0
    assert capsys.readouterr().out.startswith("11 run(s) recorded, 0 already")
    from perfgate.history.store import HistoryStore

    with HistoryStore.open(url) as store:
        got = {(s.case_id, json.loads(s.hardware)["accelerator"]): store.series(s.id).runs[0].status
               for s in store.list_series()}
    assert got[("vllm-0.32.0-tiny-llama-decode-heavy", "cpu")] == "regression"  # reports/verdicts.json
    gpu = next(v for (c, hw), v in got.items() if c == "vllm-0.32.0-tiny-llama-decode-heavy" and hw != "cpu")
    assert gpu == "ok"  # reports/gpu/verdicts.json
