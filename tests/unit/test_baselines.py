"""The baseline store: layout, round trip, corrupt / old files fail loudly, atomic writes."""

import json

import pytest

from perfgate.baselines import (
    Baseline, BaselineError, BaselineKey, Provenance, load_baseline, path_for, save_baseline, versions_available,
)

KEY = BaselineKey(hardware="cpu", engine="vllm", engine_version="0.32.0", model="tiny-llama",
                  scenario="study-a[prompt_tokens=10,concurrency=1]")


def _baseline(scale=1.0, key=KEY):
    return Baseline(key=key, fingerprint={"accelerator": "cpu"},
                    provenance=Provenance(created_at="2026-11-22T00:00:00+00:00", perfgate_version="0.1.0"),
                    trials=[{"ttft_ms.p50": 20.0 * scale}, {"ttft_ms.p50": 21.0 * scale}, {"ttft_ms.p50": 22.0 * scale}])


def test_layout_is_navigable():
    p = path_for("baselines", KEY)
    assert p.as_posix() == "baselines/cpu/vllm-0.32.0/tiny-llama/study-a-prompt_tokens=10,concurrency=1.json"


def test_round_trip_and_changes(tmp_path):
    path, changes = save_baseline(tmp_path, _baseline())
    assert changes == ["new baseline"]
    assert load_baseline(path) == _baseline()
    _, changes = save_baseline(tmp_path, _baseline(1.1))
    assert changes == ["ttft_ms.p50: 21 -> 23.1 (+10.0%)"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_corrupt_file_names_the_file(tmp_path):
    path, _ = save_baseline(tmp_path, _baseline())
    path.write_text(path.read_text()[:40])
    with pytest.raises(BaselineError, match=f"{path}: not a readable baseline"):
        load_baseline(path)


def test_old_schema_is_refused(tmp_path):
    path, _ = save_baseline(tmp_path, _baseline())
    data = json.loads(path.read_text())
    data["schema_version"] = 0
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError, match="schema_version 0, expected 1"):
        load_baseline(path)


def test_empty_trials_are_refused(tmp_path):
    path, _ = save_baseline(tmp_path, _baseline())
    data = json.loads(path.read_text())
    data["trials"] = []
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError, match="no trials"):
        load_baseline(path)


def test_versions_available_for_upgrade_question(tmp_path):
    save_baseline(tmp_path, _baseline())
    save_baseline(tmp_path, _baseline(key=KEY.model_copy(update={"engine_version": "0.31.0"})))
    assert versions_available(tmp_path, KEY) == ["0.31.0", "0.32.0"]
