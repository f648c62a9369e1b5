"""Change points (perfgate.judge.changepoint): the statistic against its definition, planted steps found where
they were planted, the gate's rules, and the false-alarm rate on pure noise."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as _st

from perfgate.judge.changepoint import (
    ChangePoint,
    HistoryPolicy,
    HistoryRun,
    change_points,
    divergence,
    environment_changes,
    judge_history,
    split_points,
    t_test,
)

GATING = ("ttft_ms.p50", "itl_per_token_ms.p50", "e2e_ms.p50", "output_throughput")
POLICY = HistoryPolicy(metrics=GATING)


def series(n: int, sigma: float = 0.02, step: float = 0.0, at: int | None = None, seed: int = 0,
           metrics: tuple[str, ...] = GATING, env_at: dict | None = None) -> list[HistoryRun]:
    """Nightly runs of lognormal noise ``sigma``; from ``at`` on latencies x(1+step), throughput /(1+step)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = 1 + step if at is not None and i >= at else 1.0
        values = {m: (300 / s if "throughput" in m else 100 * s) * float(np.exp(rng.normal(0, sigma)))
                  for m in metrics}
        env = {"engine_version": "0.31.0", "git_commit": f"{i:040x}"}
        if env_at and i >= env_at["at"]:
            env.update(env_at["env"])
        out.append(HistoryRun(run_id=100 + i, started_at=f"2026-11-{i + 1:02d}T02:00:00+00:00", values=values,
                              environment=env))
    return out


def test_divergence_is_matteson_and_james_q_statistic() -> None:
    x = np.random.default_rng(1).normal(size=9)
    q = divergence(x)
    for tau in range(1, 9):
        a, b = x[:tau], x[tau:]
        m, k = len(a), len(b)
        between = sum(abs(i - j) for i in a for j in b) * 2 / (m * k)
        wa = sum(abs(i - j) for i, j in itertools.combinations(a, 2)) / (m * (m - 1) / 2) if m > 1 else 0
        wb = sum(abs(i - j) for i, j in itertools.combinations(b, 2)) / (k * (k - 1) / 2) if k > 1 else 0
        assert q[tau] == pytest.approx(m * k / (m + k) * (between - wa - wb))


def test_t_test_is_students_pooled_test() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 7), rng.normal(0.8, 1, 5)
    assert t_test(a, b) == pytest.approx(_st.ttest_ind(a, b, equal_var=True).pvalue)
    assert t_test(np.ones(3), np.ones(4) * 2) == 0.0 and t_test(np.ones(3), np.ones(3)) == 1.0


@pytest.mark.parametrize("at,step", [(10, 0.10), (25, 0.05), (6, -0.08)])
def test_a_planted_step_is_found_where_it_was_planted(at: int, step: float) -> None:
    x = np.log(np.array([r.values["ttft_ms.p50"] for r in series(40, 0.01, step, at)]))
    [s] = split_points(x, alpha=0.001)
    assert s.index == at and np.expm1(s.diff) == pytest.approx(step, abs=0.01)


def test_two_steps_are_both_found() -> None:
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 0.01, 15), rng.normal(0.1, 0.01, 10), rng.normal(0.03, 0.01, 15)])
    assert [s.index for s in split_points(x)] == [15, 25]


def test_the_gate_names_the_run_the_change_began_in_and_what_changed() -> None:
    runs = series(16, step=0.12, at=12, env_at={"at": 12, "env": {"engine_version": "0.32.0"}})
    found = judge_history(runs, POLICY)
    assert {c.metric for c in found} == set(GATING)
    itl = next(c for c in found if c.metric == "itl_per_token_ms.p50")
    assert (itl.index, itl.run_id, itl.previous_run_id, itl.runs_before, itl.runs_after) == (12, 112, 111, 12, 4)
    assert itl.worse and itl.ci_low < itl.ratio < itl.ci_high and 1.10 < itl.ratio < 1.14
    assert itl.changes[0] == "engine 0.31.0 → 0.32.0" and itl.changes[1].startswith("commit ")
    line = itl.one_line()
    assert line.startswith("itl_per_token_ms.p50 +1") and " since run 112 (2026-11-13, engine 0.31.0 → 0.32.0" in line
    tput = next(c for c in found if c.metric == "output_throughput")
    assert tput.ratio < 1 and tput.worse  # higher is better: a drop is the worsening


def test_one_line_is_the_documented_form() -> None:
    cp = ChangePoint(metric="itl_per_token_ms.p50", index=14, run_id=14, started_at="2026-12-01T02:00:00+00:00",
                     previous_run_id=13, runs_before=13, runs_after=3, before_median=5.0, after_median=5.62,
                     ratio=1.124, ci_low=1.08, ci_high=1.17, level=0.99, p=1e-5, direction="lower",
                     min_effect=0.05, observe_only=False, worse=True, changes=("engine 0.31.0 → 0.32.0",))
    assert cp.one_line() == "itl_per_token_ms.p50 +12.4% [+8, +17] since run 14 (2026-12-01, engine 0.31.0 → 0.32.0)"


def test_an_improvement_a_small_step_and_an_observe_only_metric_do_not_fail_the_gate() -> None:
    assert judge_history(series(16, step=-0.12, at=12), POLICY) == []  # faster
    assert judge_history(series(16, 0.004, step=0.03, at=12), POLICY) == []  # clear, but under min_effect 5%
    found = change_points(series(16, 0.004, step=0.03, at=12), HistoryPolicy(metrics=GATING, min_effect={"*": 0.01}))
    assert {c.index for c in found} == {12}  # ... and found when 1% matters
    p99 = series(16, step=0.2, at=12, metrics=("ttft_ms.p99",))
    assert judge_history(p99, HistoryPolicy(metrics=("ttft_ms.p99",))) == []
    [cp] = change_points(p99, HistoryPolicy(metrics=("ttft_ms.p99",)))
    assert cp.observe_only and cp.index == 12


def test_an_accepted_change_is_the_new_normal() -> None:
    runs = series(16, step=0.12, at=12)
    assert judge_history(runs, POLICY)
    assert judge_history(runs, POLICY, resets={None: runs[12].run_id}) == []
    only_itl = judge_history(runs, POLICY, resets={"itl_per_token_ms.p50": runs[12].run_id})
    assert "itl_per_token_ms.p50" not in {c.metric for c in only_itl} and len(only_itl) == 3
    later = series(22, step=0.12, at=12)
    later = later[:18] + [HistoryRun(r.run_id, r.started_at, {m: v * 1.12 for m, v in r.values.items()},
                                     r.environment) for r in later[18:]]
    assert {c.index for c in judge_history(later, POLICY, resets={None: later[12].run_id})} == {18}  # next step


def test_a_change_of_hardware_ends_the_series() -> None:
    runs = series(16, step=0.3, at=10, env_at={"at": 10, "env": {"hardware": "NVIDIA H200"}})
    assert judge_history(runs, POLICY) == []


def test_only_new_change_points_fail_the_gate() -> None:
    assert judge_history(series(30, step=0.12, at=10), POLICY) == []  # began 20 runs ago: not new
    assert judge_history(series(30, step=0.12, at=10), HistoryPolicy(metrics=GATING, lookback=25))


def test_unusable_runs_and_missing_values_are_skipped() -> None:
    runs = series(16, step=0.12, at=12)
    runs[13] = HistoryRun(runs[13].run_id, runs[13].started_at, {"ttft_ms.p50": 1e6}, status="failed")
    runs[5] = HistoryRun(runs[5].run_id, runs[5].started_at, {})
    found = judge_history(runs, POLICY)
    assert {c.index for c in found} == {12} and all(c.runs_after == 3 for c in found)


def test_environment_changes_are_listed_in_a_stable_order() -> None:
    before = {"engine_version": "0.31.0", "engine_spec": "vllm==0.31.0", "model_revision": "abcdef0123456789",
              "custom": "1"}
    after = {"engine_version": "0.32.0", "engine_spec": "vllm==0.32.0", "model_revision": "0123456789abcdef",
             "custom": "2"}
    assert environment_changes(before, after) == ("engine 0.31.0 → 0.32.0", "model revision abcdef0123 → 0123456789",
                                                  "custom 1 → 2")


def test_pure_noise_raises_a_false_regression_in_at_most_one_night_in_a_hundred() -> None:
    """The stated rate (docs/statistics.md): <= 1% of nights, 4 independent gating metrics, 2-15% noise."""
    nights = 0
    false = 0
    for seed in range(300):
        sigma = (0.02, 0.05, 0.15)[seed % 3]
        runs = series(20 + seed % 11, sigma, seed=seed)
        nights += 1
        false += bool(judge_history(runs, POLICY))
    assert false / nights <= 0.01, (false, nights)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(4, 40), scale=st.floats(1e-3, 1e3))
def test_units_do_not_matter_and_noise_below_min_effect_is_never_a_regression(seed: int, n: int,
                                                                           scale: float) -> None:
    """Log values: ms or s give the same change points. Noise of 0.5% never makes a 5% regression."""
    runs = series(n, 0.005, seed=seed)
    scaled = [HistoryRun(r.run_id, r.started_at, {m: v * scale for m, v in r.values.items()}) for r in runs]
    key = [(c.metric, c.index) for c in change_points(runs, POLICY)]
    assert key == [(c.metric, c.index) for c in change_points(scaled, POLICY)]
    assert judge_history(runs, POLICY) == []


def test_new_errors_are_a_regression_on_their_own_scale() -> None:
    """error_rate is absolute (often exactly 0): no logs, any new error rate is worse than min_effect 0."""
    runs = series(14, metrics=GATING)
    runs = [HistoryRun(r.run_id, r.started_at, {**r.values, "error_rate": 0.0 if i < 12 else 0.02}, r.environment)
            for i, r in enumerate(runs)]
    [cp] = judge_history(runs, HistoryPolicy(metrics=(*GATING, "error_rate")))
    assert (cp.metric, cp.index, cp.ratio, cp.after_median) == ("error_rate", 12, None, 0.02)
    assert cp.one_line().startswith("error_rate 0 → 0.02 since run 112")


def test_a_run_that_served_nothing_is_not_a_level() -> None:
    runs = series(16)
    runs[15] = HistoryRun(runs[15].run_id, runs[15].started_at, {**runs[15].values, "output_throughput": 0.0})
    runs[14] = HistoryRun(runs[14].run_id, runs[14].started_at, {**runs[14].values, "output_throughput": 0.0})
    assert judge_history(runs, POLICY) == [] and change_points(runs, POLICY) == []


def test_a_case_is_judged_on_history_with_its_own_policy() -> None:
    from perfgate.judge.verdict import JudgePolicy

    pol = HistoryPolicy.like(JudgePolicy(metrics=GATING, min_effect={"*": 0.2}, observe_only=("e2e_ms.*",)),
                             lookback=3)
    assert pol.lookback == 3 and pol.policies()["ttft_ms.p50"].min_effect == 0.2
    assert pol.policies()["e2e_ms.p50"].observe_only
    assert judge_history(series(16, step=0.12, at=12), pol) == []  # 12% is under this case's 20%
