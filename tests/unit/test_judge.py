"""The pure judge, the one status precedence, and the live A/B's sequential statistics, against known truth."""

from __future__ import annotations

import numpy as np
import pytest

from perfgate.judge.baselines import Baseline, BaselineKey, Provenance
from perfgate.judge.sequential import (
    SequentialPlan,
    compare_paired,
    decided,
    judge_live,
    side_order,
)
from perfgate.judge.stats import GATING_METRICS, policies_for, policy_for
from perfgate.judge.verdict import JudgePolicy, judge_against_baseline, not_found
from perfgate.schema.verdict import BaselineRef, Judgement, case_status

KEY = BaselineKey(machine="box-a", hardware="cpu", engine="vllm", engine_version="0.31.0", model="m", scenario="s")
FP = {"accelerator": "cpu", "cpu_model": "AMD EPYC", "workload": "{}"}


def _trials(rng, n, scale=1.0, noise=0.03):
    out = []
    for _ in range(n):
        f = scale * float(np.exp(rng.normal(0, noise)))
        out.append({"ttft_ms.p50": 20.0 * f, "itl_per_token_ms.p50": 5.0 * f, "e2e_ms.p50": 600.0 * f,
                    "output_throughput": 300.0 / f, "error_rate": 0.0})
    return out


def _baseline(trials):
    return Baseline(key=KEY, fingerprint=FP, provenance=Provenance(created_at="t", perfgate_version="0"),
                    trials=trials)


def test_judge_is_pure_and_typed():
    rng = np.random.default_rng(1)
    base = _baseline(_trials(rng, 6))
    cur = _trials(rng, 6, scale=1.3)
    j1 = judge_against_baseline(cur, FP, base, JudgePolicy(), "p.json")
    j2 = judge_against_baseline(cur, FP, base, JudgePolicy(), "p.json")
    assert isinstance(j1, Judgement) and j1 == j2  # same inputs, same answer, nothing mutated
    assert j1.status == "regression" and {v.metric for v in j1.regressions} >= {"ttft_ms.p50", "e2e_ms.p50"}
    assert j1.baseline == BaselineRef(path="p.json", engine_version="0.31.0", created_at="t", machine="box-a")
    assert j1.failure_line().startswith("ttft_ms.p50 +") and "@ box-a" in j1.failure_line()


def test_environment_mismatch_is_not_compared_never_a_regression():
    rng = np.random.default_rng(2)
    j = judge_against_baseline(_trials(rng, 3, scale=2.0), {**FP, "cpu_model": "Intel"}, _baseline(_trials(rng, 3)),
                               JudgePolicy())
    assert j.status == "env_mismatch" and j.verdicts == [] and "cpu_model" in j.reason


def test_missing_baseline_says_which_machines_have_one():
    here = KEY.model_copy(update={"machine": "box-b"})
    j = not_found(here, [], ["box-a"])
    assert j.status == "not_comparable" and "machine 'box-b'" in j.reason and "'box-a'" in j.reason
    assert not_found(here, ["0.30.0"], []).status == "no_baseline"


@pytest.mark.parametrize(("error", "trials", "jstatus", "written", "expected"), [
    ("boom", ["ok"], "regression", False, "failed"),
    (None, ["ok", "failed"], "ok", False, "failed"),
    (None, ["client_bound", "ok"], "regression", False, "client_bound"),
    (None, ["ok"], "regression", False, "regression"),
    (None, ["ok"], "not_comparable", False, "not_comparable"),
    (None, ["ok"], "no_baseline", False, "no_baseline"),
    (None, ["ok"], "env_mismatch", False, "env_mismatch"),
    (None, ["ok"], None, True, "baseline_written"),
    (None, ["ok"], None, False, "not_judged"),
    (None, ["ok"], "ok", False, "ok"),
])
def test_status_precedence(error, trials, jstatus, written, expected):
    j = Judgement(status=jstatus) if jstatus else None
    assert case_status(error=error, trial_statuses=trials, judgement=j, baseline_written=written) == expected


def test_error_rate_keeps_its_absolute_rule_under_a_wildcard_override():
    assert policy_for("error_rate", {"*": 0.10}).min_effect == 0.0
    assert policy_for("error_rate", {"error_rate": 0.02}).min_effect == 0.02  # named exactly: taken
    rng = np.random.default_rng(3)
    base = _baseline(_trials(rng, 3))
    cur = [t | {"error_rate": 0.0625} for t in _trials(rng, 3)]
    j = judge_against_baseline(cur, FP, base, JudgePolicy(min_effect={"*": 0.10}))
    assert {v.metric: v.verdict for v in j.verdicts}["error_rate"] == "regression"


def test_side_order_alternates():
    assert [side_order(k) for k in range(4)] == [("A", "B"), ("B", "A"), ("A", "B"), ("B", "A")]


def test_alpha_spending_adds_up_to_alpha():
    plan = SequentialPlan(min_blocks=3, max_blocks=10, alpha=0.05)
    looks = [plan.look_alpha(n) for n in range(0, 11)]
    assert looks[:3] == [0.0, 0.0, 0.0] and all(a > 0 for a in looks[3:])
    assert sum(looks) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        SequentialPlan(min_blocks=1)
    sparse = SequentialPlan(min_blocks=6, max_blocks=30, look_every=8)
    assert sparse.looks() == [6, 14, 22, 30]
    assert sum(sparse.look_alpha(n) for n in range(31)) == pytest.approx(sparse.alpha) and sparse.alpha == 0.01
    assert sparse.look_alpha(7) == 0.0 and sparse.look_alpha(30) > SequentialPlan(6, 30).look_alpha(30)


def test_paired_comparison_finds_a_known_10pct_slowdown_and_cancels_drift():
    rng = np.random.default_rng(4)
    pol = policies_for(list(GATING_METRICS))
    a, b = [], []
    for k in range(8):
        drift = 1.0 + 0.05 * k  # the machine slows down 40% over the session: shared by both sides
        a += _trials(rng, 1, scale=drift, noise=0.02)
        b += _trials(rng, 1, scale=1.10 * drift, noise=0.02)
    vs = {v.metric: v for v in compare_paired(a, b, pol, 0.01)}
    assert vs["ttft_ms.p50"].verdict == "regression" and vs["ttft_ms.p50"].method == "paired-log"
    assert vs["ttft_ms.p50"].ci_low < 1.10 < vs["ttft_ms.p50"].ci_high
    assert vs["output_throughput"].verdict == "regression" and vs["error_rate"].verdict == "no_change"


def test_live_aa_false_regressions_stay_under_alpha():
    """A/A with heavy drift and noise: the sequential judge's false-regression rate is at most its alpha."""
    rng = np.random.default_rng(5)
    plan = SequentialPlan(min_blocks=3, max_blocks=8, alpha=0.05)
    pol = JudgePolicy(metrics=GATING_METRICS, min_effect={"*": 0.0})  # no effect floor: the alpha alone protects
    false = 0
    for _ in range(400):
        a, b = [], []
        for k in range(plan.max_blocks):
            drift = float(np.exp(rng.normal(0, 0.2)))
            a += _trials(rng, 1, scale=drift, noise=0.05)
            b += _trials(rng, 1, scale=drift, noise=0.05)
            j, stop = judge_live(a, b, pol, plan, context="c", reference=BaselineRef(live_engine="A"),
                                 final=False)
            if stop:
                break
        false += j.status == "regression"
    assert false / 400 <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 400)


def test_live_stops_early_when_the_answer_is_clear():
    rng = np.random.default_rng(6)
    plan = SequentialPlan(min_blocks=3, max_blocks=10)
    a, b = [], []
    for _ in range(10):
        a += _trials(rng, 1, noise=0.01)
        b += _trials(rng, 1, scale=1.5, noise=0.01)
        j, stop = judge_live(a, b, JudgePolicy(metrics=GATING_METRICS), plan, context="c",
                             reference=BaselineRef(live_engine="A"), final=False)
        if stop:
            break
    assert stop and len(a) < 10 and j.status == "regression" and decided(j.verdicts)


def test_boot_offsets_need_several_boots_to_be_seen():
    """One boot per side: a boot offset looks like a real difference. With boot pairs as clusters the
    interval widens to include boot-to-boot variance, and the same data is no longer a clear regression."""
    rng = np.random.default_rng(7)
    pol = policies_for(list(GATING_METRICS))
    a, b, clusters = [], [], []
    for boot in range(4):
        offset = [1.12, 0.97, 1.02, 0.93][boot]  # B's boot-to-boot speed, mean ~1.01
        for _ in range(6):
            a += _trials(rng, 1, noise=0.01)
            b += _trials(rng, 1, scale=offset, noise=0.01)
            clusters.append(boot)
    first = {v.metric: v for v in compare_paired(a[:6], b[:6], pol, 0.05)}
    assert first["ttft_ms.p50"].verdict == "regression"  # boot 0 alone: +12% "regression"
    all_boots = {v.metric: v for v in compare_paired(a, b, pol, 0.05, clusters)}
    v = all_boots["ttft_ms.p50"]
    assert v.verdict == "inconclusive" and v.n_baseline == 24 and v.ci_low < 1.0 < v.ci_high


def test_correlated_neighbouring_blocks_widen_the_interval():
    """Slow phases that last several blocks: the Newey-West error is larger than the plain one, never smaller."""
    from perfgate.judge.sequential import _mean_se_df

    rng = np.random.default_rng(8)
    phases = np.repeat(rng.normal(0, 0.1, 6), 4)  # 24 blocks, phases of 4
    d = phases + rng.normal(0, 0.02, 24)
    _, se, df = _mean_se_df(d, np.zeros(24, dtype=int))
    assert df == 23 and se > 1.3 * d.std(ddof=1) / np.sqrt(24)
    iid = rng.normal(0, 0.1, 24)
    assert _mean_se_df(iid, np.zeros(24, dtype=int))[1] >= iid.std(ddof=1) / np.sqrt(24)


def test_live_ab_drops_a_client_bound_or_disturbed_block_and_fails_past_the_limit():
    """session.live_ab.run_live_ab: a block with a client-bound trial, or one that other processes took more than
    ab.max_disturbance of the engine's core from, is dropped whole and re-run, and counted; more than
    max(3, blocks/10) such blocks fail the comparison."""
    from types import SimpleNamespace

    from perfgate.config.matrix import Case, EngineConfig, ModelSpec, Scenario, ScenarioFile
    from perfgate.session import CaseOutcome
    from perfgate.session.live_ab import LiveSettings, run_live_ab
    from perfgate.schema.result import Contention
    from perfgate.session.trials import TrialBatch, Trials

    spec = ScenarioFile(name="s", num_requests=1, prompt_tokens=1, max_tokens=1, concurrency=1,
                        ab_min_blocks=3, ab_max_blocks=4)
    case = Case("cpu", EngineConfig(id="b", kind="sim"), ModelSpec("m", None, "m"), Scenario("s", "s", spec))

    class FakeRunner:  # a perfgate.session.trials.RunsTrials
        def __init__(self, bound_attempts, disturbed=()):
            self.bound, self.disturbed, self.plans = bound_attempts, set(disturbed), []

        def boot(self, engine, model):
            assert not self.plans  # both sides up before block 0
            self.booted = [*getattr(self, "booted", []), engine.id]

        def prepare(self, engine, model, scenario, trials):
            return {}, None  # the trials build their own prompts

        def run(self, plan: TrialBatch) -> Trials:
            assert plan.rerun_client_bound is False  # the A/B drops the block; a re-run inside would hide the count
            assert plan.count == 1 and plan.quiesce_others
            self.plans.append(plan)
            status = "client_bound" if plan.start in self.bound else "ok"
            taken = 0.12 if plan.start in self.disturbed and plan.test_id == "a-m-s.reference" else 0.01
            contention = Contention(window_s=4.0, engine_cores=[0], client_cores=[1], foreign_engine_cores=taken,
                                    foreign_client_cores=0.0, steal_engine_cores=0.0)
            metrics = {"ttft_ms.p50": 10.0, "itl_per_token_ms.p50": 5.0, "e2e_ms.p50": 100.0,
                       "output_throughput": 50.0, "error_rate": 0.0}
            return Trials((SimpleNamespace(status=status, test_id=plan.test_id, trial=plan.start,
                                           failure_reason="stall", summary=SimpleNamespace(metrics=metrics),
                                           contention=contention,
                                           environment=SimpleNamespace(engine=SimpleNamespace(version="1"))),))

    start = CaseOutcome(case, machine="x")
    settings = LiveSettings(machine="x")
    ok = run_live_ab(start, FakeRunner({1}), EngineConfig(id="a", kind="sim"), None, settings)
    # identical sides: decided (no change) at the first look, 3 kept blocks; attempt 1 was dropped and re-run
    assert ok.error is None and len(ok.results) == len(ok.reference_results) == 3
    assert [r.trial for r in ok.results] == [0, 2, 3]
    assert all(r.status == "ok" for r in ok.results + ok.reference_results)
    assert any("block 1 discarded" in n for n in ok.notes) and any("1 block(s) discarded" in n for n in ok.notes)
    assert start.results == () and start.notes == ()  # the outcome passed in is a value: nothing changed it

    bad = run_live_ab(start, FakeRunner({0, 1, 2, 3}), EngineConfig(id="a", kind="sim"), None, settings)
    assert bad.error and "client-bound in 4 blocks (4 dropped, more than 3)" in bad.error
    assert any(n.startswith("live A/B vs a: stopped after 0 kept blocks (") for n in bad.notes)
    assert bad.status == "failed"

    # 12% of the engine's core taken by a neighbour in A's trial of attempt 0: over the 5% bound, dropped
    calm = run_live_ab(start, FakeRunner(set(), disturbed={0}), EngineConfig(id="a", kind="sim"), None, settings)
    assert calm.error is None and [r.trial for r in calm.results] == [1, 2, 3]
    assert any("block 0 discarded: a-m-s.reference trial 0 disturbed: other processes took 12% of the engine's "
               "cores (steal 0%) (bound 5%)" in n for n in calm.notes)
    assert any("1 block(s) discarded as disturbed and re-run" in n for n in calm.notes)
    busy = run_live_ab(start, FakeRunner(set(), disturbed={0, 1, 2, 3, 4}), EngineConfig(id="a", kind="sim"),
                       None, settings)
    assert busy.error and "disturbed in 4 blocks" in busy.error and "not quiet enough" in busy.error


def test_calibration_is_a_positive_rate_measured_once():
    from perfgate.measure import environment

    environment._CALIBRATION = None
    first = environment.calibrate()
    assert first > 0 and environment.calibrate() == first  # cached: one figure per process
