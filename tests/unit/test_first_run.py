"""A new runner's first run, and what the fingerprint compares across (docs/statistics.md).

First run: a machine with no baseline at all records its results and passes, even under --perf-strict,
with one line saying so; a case missing its baseline on a machine that has others still fails under strict.
Compared across: a driver patch on the same branch, a power limit within 5%, a model revision whose weights'
digest is unchanged - each a note, never NOT COMPARED; anything beyond that still is.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from perfgate.judge.baselines import (
    Baseline,
    BaselineKey,
    Provenance,
    fingerprint,
    machine_has_baselines,
    save_baseline,
)
from perfgate.judge.verdict import JudgePolicy, judge_against_baseline, not_found
from perfgate.schema.result import EngineInfo, Environment, Hardware, Result, Software, Workload
from perfgate.session.outcome import CaseOutcome

KEY = BaselineKey(machine="gpu-new", hardware="NVIDIA H100", engine="vllm", engine_version="0.32.0", model="m",
                  scenario="study-a")
SLOWER = [{"ttft_ms.p50": 20.0}, {"ttft_ms.p50": 20.3}, {"ttft_ms.p50": 19.8}]


def _gate(judgement, strict=True):
    case = SimpleNamespace(id="vllm-m-study-a")
    return CaseOutcome(case, machine="gpu-new", judgement=judgement, strict=strict).gate()


def _judge_missing(root, key=KEY):
    return not_found(key, [], [], machine_has_baselines(root, key.machine))


def _baseline(key=KEY, fp=None):
    return Baseline(key=key, fingerprint=fp or {"accelerator": "NVIDIA H100"},
                    provenance=Provenance(created_at="t", perfgate_version="0"),
                    trials=[{"ttft_ms.p50": 10.0}, {"ttft_ms.p50": 10.2}, {"ttft_ms.p50": 9.9}])


def test_the_first_run_of_a_machine_passes_under_strict_and_says_so(tmp_path):
    j = _judge_missing(tmp_path)
    assert j.status == "no_baseline" and j.first_run
    action, line = _gate(j)
    assert action == "pass"
    assert "first run on machine 'gpu-new': recorded, nothing to compare" in line


def test_a_missing_case_on_a_machine_with_baselines_still_fails_under_strict(tmp_path):
    save_baseline(tmp_path, _baseline(KEY.model_copy(update={"scenario": "study-b"})))
    assert machine_has_baselines(tmp_path, "gpu-new") and not machine_has_baselines(tmp_path, "gpu-other")
    j = _judge_missing(tmp_path)
    assert j.status == "no_baseline" and not j.first_run
    action, line = _gate(j)
    assert action == "fail" and "NOT COMPARED under --perf-strict: no baseline for" in line
    assert _gate(j, strict=False)[0] == "pass"


def test_a_new_runner_next_to_others_is_a_first_run_not_a_failure(tmp_path):
    save_baseline(tmp_path, _baseline(KEY.model_copy(update={"machine": "gpu-old"})))
    j = not_found(KEY, [], ["gpu-old"], machine_has_baselines(tmp_path, "gpu-new"))
    assert j.first_run and "'gpu-old'" in j.reason and _gate(j)[0] == "pass"


def _result(driver="570.124.06", power=700.0, revision="aaaa", weights="w1", count=1, accel="NVIDIA H100"):
    env = Environment(engine=EngineInfo(name="vllm", version="0.32.0"), model="m",
                      hardware=Hardware(accelerator=accel, gpu_count=count, gpu_driver=driver,
                                        gpu_power_limit_w=power),
                      software=Software(model_revision=revision, model_weights=weights, driver=driver),
                      perfgate_version="0", python="3.11", hostname="h", started_at="t")
    return Result(test_id="t", scenario="s", environment=env,
                  workload=Workload(scenario="s", num_requests=1, prompt_tokens=4, max_tokens=4, concurrency=1))


@pytest.mark.parametrize("change, note", [
    ({"driver": "570.133.20"}, "gpu_driver '570.124.06' -> '570.133.20' (same 570 branch): compared across"),
    ({"power": 680.0}, "gpu_power_limit_w 700.0 -> 680.0 (within 5%): compared across"),
    ({"revision": "bbbb"}, "model_revision 'aaaa' -> 'bbbb' (model_weights unchanged): compared across"),
])
def test_what_is_compared_across_is_a_note_and_the_case_is_judged(change, note):
    baseline = _baseline(fp=fingerprint(_result()))
    j = judge_against_baseline(SLOWER, fingerprint(_result(**change)), baseline, JudgePolicy())
    assert j.status == "regression" and f"note: {note}" in j.notes
    exact = JudgePolicy(compared_across={k: "exact" for k in ("gpu_driver", "gpu_power_limit_w", "model_revision")})
    assert judge_against_baseline(SLOWER, fingerprint(_result(**change)), baseline, exact).status == "env_mismatch"


@pytest.mark.parametrize("change, key", [
    ({"driver": "580.65.06"}, "gpu_driver"),  # another branch
    ({"power": 600.0}, "gpu_power_limit_w"),  # 14% lower
    ({"revision": "bbbb", "weights": "w2"}, "model_weights"),  # the weights changed
    ({"revision": "bbbb", "weights": None}, "model_revision"),  # weights not recorded: revision compared as is
    ({"count": 2}, "gpu_count"),
    ({"accel": "NVIDIA H200"}, "accelerator"),
])
def test_what_makes_numbers_incomparable_is_still_not_compared(change, key):
    baseline = _baseline(fp=fingerprint(_result()))
    j = judge_against_baseline(SLOWER, fingerprint(_result(**change)), baseline, JudgePolicy())
    assert j.status == "env_mismatch" and f"{key}: " in j.reason


def test_a_scenario_may_change_the_rules_and_a_bad_rule_is_refused():
    from perfgate.config.scenario import PolicySpec

    p = PolicySpec(compared_across={"gpu_power_limit_w": "within:0.2", "cpu_model": "shown"})
    baseline = _baseline(fp=fingerprint(_result()))
    policy = JudgePolicy(compared_across=p.compared_across)
    assert judge_against_baseline(SLOWER, fingerprint(_result(power=600.0)), baseline, policy).status == "regression"
    # the defaults still hold for the keys the scenario does not name
    assert judge_against_baseline(SLOWER, fingerprint(_result(driver="580.65.06")), baseline,
                                  policy).status == "env_mismatch"
    with pytest.raises(ValueError, match="unknown rule"):
        PolicySpec(compared_across={"gpu_driver": "roughly"})


def test_the_weights_digest_follows_the_blobs_not_the_revision(tmp_path):
    from perfgate.engines.hfcache import weights_digest

    repo = tmp_path / "models--org--m"

    def snapshot(rev, blob):
        (repo / "blobs").mkdir(parents=True, exist_ok=True)
        (repo / "blobs" / blob).write_bytes(b"w")
        snap = repo / "snapshots" / rev
        snap.mkdir(parents=True)
        os.symlink(repo / "blobs" / blob, snap / "model.safetensors")
        (snap / "README.md").write_text(rev)
        return str(snap)

    a, b, c = snapshot("r1", "sha-1"), snapshot("r2", "sha-1"), snapshot("r3", "sha-2")
    assert weights_digest(a) == weights_digest(b) != weights_digest(c)
    assert weights_digest(str(tmp_path)) is None  # not a cache snapshot: nothing to say


def test_models_fetch_pins_the_matrix_revision_and_warns_on_an_unpinned_gpu_model(tmp_path, monkeypatch, capsys):
    import argparse
    from pathlib import Path

    import huggingface_hub

    from perfgate.cli.models import _models_fetch

    asked = {}
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, revision=None, **kw: asked.setdefault(repo_id, revision) or "snap")
    root = Path(__file__).resolve().parents[2]
    args = argparse.Namespace(models=[], matrix=str(root / "perf" / "matrix.yaml"), hardware="gpu", cache_dir=None)
    assert _models_fetch(args) == 0
    assert asked and all(rev and len(rev) == 40 for rev in asked.values()), asked  # every shipped GPU model pinned
    assert "warning" not in capsys.readouterr().err
    matrix = tmp_path / "matrix.yaml"
    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "s.yaml").write_text("name: s\nnum_requests: 1\nprompt_tokens: 4\nmax_tokens: 4\nconcurrency: 1\n")
    matrix.write_text("scenarios_dir: sc\nengines: {e: {kind: sim}}\nmodels: {m: {path: org/unpinned}}\n"
                      "runs: [{hardware: gpu, engines: [e], models: [m], scenarios: [s]}]\n")
    asked.clear()
    assert _models_fetch(argparse.Namespace(models=[], matrix=str(matrix), hardware="gpu", cache_dir=None)) == 0
    assert asked == {"org/unpinned": None}
    assert "model 'm' (org/unpinned) has no pinned `revision:`" in capsys.readouterr().err


E2E_MATRIX = """
scenarios_dir: scenarios
engines:
  sim: {kind: sim, boot_timeout_s: 30, flags: [--ttft-base-ms, "20", --itl-ms, "10"]}
models:
  sim-model: {path: sim-model}
runs:
  - {hardware: cpu, engines: [sim], models: [sim-model], scenarios: [one, two]}
"""


def test_a_new_runners_strict_nightly_passes_and_an_established_ones_missing_case_fails(tmp_path, perf_project):
    """``pytest perf --perf-strict`` against the sim, in a subprocess as a runner meets it."""
    import subprocess
    import sys

    scenario = "name: {}\nnum_requests: 3\nprompt_tokens: 4\nmax_tokens: 4\nconcurrency: 1\ntrials: 1\n"
    project = perf_project(tmp_path, E2E_MATRIX, {n: scenario.format(n) for n in ("one", "two")})

    def run(*args):
        env = {**os.environ, "PERFGATE_MACHINE": "new-box"}
        return subprocess.run([sys.executable, "-m", "pytest", "perf", "-q", "-p", "no:cacheprovider", *args],
                              cwd=project, capture_output=True, text=True, env=env, timeout=300)

    first = run("--perf-strict")
    assert first.returncode == 0, first.stdout[-3000:]
    assert first.stdout.count("first run on machine 'new-box': recorded, nothing to compare") == 2, first.stdout
    assert len(list((project / "reports" / "results").glob("*.result.json"))) == 2  # recorded
    up = run("--perf-update-baselines")
    assert up.returncode == 0, up.stdout[-3000:]
    [two] = list((project / "baselines").rglob("two.json"))
    two.unlink()  # the machine has baselines now; one case lost its own
    later = run("--perf-strict")
    assert later.returncode == 1, later.stdout[-3000:]
    assert "sim-sim-model-two: NOT COMPARED under --perf-strict: no baseline for" in later.stdout
    assert "first run" not in later.stdout


def test_a_pinned_model_is_served_and_checked_at_its_revision(tmp_path, monkeypatch):
    """Fetched by commit the cache has no refs/main: the engine is told the revision (beside the model path, not
    among the recorded flags) and preflight looks for that snapshot."""
    from pathlib import Path

    from perfgate.config.matrix import EngineConfig, ModelSpec
    from perfgate.engines import ModelRef, get_adapter
    from perfgate.engines.preflight import check_model

    rev = "7ae557604adf67be50417f59c2c2f167def9a775"
    pinned = ModelRef("qwen", "Qwen/Qwen2.5-0.5B-Instruct", revision=rev)
    for kind, spec in (("vllm", "vllm==0.32.0"), ("sglang", "sglang==0.5.23")):
        plan = get_adapter(kind).launch_plan(Path("/py"), pinned, "127.0.0.1", 8000, EngineConfig(id=kind, kind=kind,
                                                                                                  spec=spec))
        i = plan.command.index("--revision")
        assert plan.command[i + 1] == rev and plan.command[i - 1] == pinned.path and "--revision" not in plan.flags
        unpinned = get_adapter(kind).launch_plan(Path("/py"), ModelRef("qwen", pinned.path), "127.0.0.1", 8000,
                                                 EngineConfig(id=kind, kind=kind, spec=spec))
        assert "--revision" not in unpinned.command
    snap = tmp_path / "models--Qwen--Qwen2.5-0.5B-Instruct" / "snapshots" / ("1" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    other = check_model(ModelSpec("qwen", None, pinned.path, revision=rev), tmp_path)  # another snapshot only
    assert other.severity == "block" and "pinned revision 7ae557604adf" in other.message
    assert check_model(ModelSpec("qwen", None, pinned.path, revision="1" * 40), tmp_path).severity == "ok"


def test_with_history_on_the_first_strict_night_passes_and_the_second_compares_with_it(tmp_path, perf_project):
    import subprocess
    import sys

    scenario = "name: one\nnum_requests: 3\nprompt_tokens: 4\nmax_tokens: 4\nconcurrency: 1\ntrials: 1\n"
    project = perf_project(tmp_path, E2E_MATRIX.replace("[one, two]", "[one]"), {"one": scenario})
    env = {**os.environ, "PERFGATE_MACHINE": "new-box", "PERFGATE_HISTORY": str(tmp_path / "history.sqlite")}

    def night(*args):
        return subprocess.run([sys.executable, "-m", "pytest", "perf", "-q", "-p", "no:cacheprovider", *args],
                              cwd=project, capture_output=True, text=True, env=env, timeout=300)

    first = night("--perf-strict")
    assert first.returncode == 0, first.stdout[-3000:]
    assert "first run on machine 'new-box': recorded, nothing to compare" in first.stdout
    # no stored baseline still: the history's previous run is the reference (one trial against one decides
    # nothing, which --perf-strict fails as inconclusive: not this test's question)
    second = night()
    assert second.returncode == 0, second.stdout[-3000:]
    assert "judged on history: run 1" in second.stdout and "0 NOT COMPARED" in second.stdout, second.stdout[-3000:]
