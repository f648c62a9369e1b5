"""Inconclusive as a case status, and a live A/B's answer as it reaches the terminal, verdicts.json and the report."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from perfgate.config.matrix import Case, EngineConfig, ModelSpec, Scenario, ScenarioFile
from perfgate.report import render_markdown, render_report
from perfgate.report.data import gather
from perfgate.report.terminal import CaseLines, ab_table, session_summary
from perfgate.schema.status import STATUS_GROUPS, StatusGroup, count_statuses
from perfgate.schema.verdict import (
    BaselineRef,
    BlockPoint,
    CaseVerdict,
    Judgement,
    LiveRecord,
    LookPoint,
    MetricVerdict,
    VerdictsFile,
    case_status,
    load_verdicts,
)
from perfgate.session import CaseOutcome

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "report" / "run"
LIVE_REF = BaselineRef(live_engine="vllm-0.31.0", engine_version="0.31.0")  # machine unnamed: None


def _mv(metric: str, verdict: str, ratio: float = 1.02, *, method: str = "paired-log", observe_only: bool = False,
        direction: str = "lower") -> MetricVerdict:
    return MetricVerdict(metric=metric, verdict=verdict, ratio=ratio, ci_low=ratio - 0.05, ci_high=ratio + 0.06,
                         change_pct=(ratio - 1) * 100, mde_pct=7.9, n_baseline=24, n_current=24, direction=direction,
                         observe_only=observe_only, baseline_median=672.3, current_median=662.6, level=0.992,
                         min_effect=0.05, method=method)


def _live_judgement(outcome: str = "inconclusive") -> Judgement:
    verdicts = [_mv("itl_per_token_ms.p50", "inconclusive" if outcome == "inconclusive" else outcome),
                _mv("e2e_ms.p50", "no_change", 1.01), _mv("output_throughput", "no_change", 0.99, direction="higher"),
                _mv("error_rate", "no_change", 1.0, method="absolute")]
    live = LiveRecord(primary_metric="itl_per_token_ms.p50", min_effect=0.05,
                      blocks=[BlockPoint(block=k, ratio=1.0 + 0.02 * ((-1) ** k)) for k in range(24)]
                      + [BlockPoint(block=5, ratio=1.4, dropped="client-bound")],
                      looks=[LookPoint(blocks=n, ratio=1.02, ci_low=0.95, ci_high=1.09, boundary=1.09)
                             for n in (12, 18, 24)], span_s=298.0, setup_s=120.0)
    return Judgement(status="regression" if outcome == "regression" else "ok", verdicts=verdicts, baseline=LIVE_REF,
                     context="vllm-0.31.0 (0.31.0) live / tiny-llama / unnamed machine", outcome=outcome,
                     primary_metric="itl_per_token_ms.p50", detectable_pct=7.9, live=live,
                     reason="live A/B, 24 paired blocks; inconclusive at this budget (detectable: 7.9%)")


# -- the status ------------------------------------------------------------------------------------------------

def test_inconclusive_comes_after_regression_and_failures_and_before_ok():
    undecided = _live_judgement("inconclusive")
    assert case_status(error=None, trial_statuses=["ok"], judgement=undecided) == "inconclusive"
    assert case_status(error=None, trial_statuses=["ok"], judgement=_live_judgement("regression")) == "regression"
    assert case_status(error=None, trial_statuses=["ok"], judgement=_live_judgement("no_change")) == "ok"
    assert case_status(error=None, trial_statuses=["ok", "client_bound"], judgement=undecided) == "client_bound"
    assert case_status(error="boom", trial_statuses=["ok"], judgement=undecided) == "failed"
    assert case_status(error=None, trial_statuses=["ok"], judgement=undecided, slo_violated=True) == "slo_violated"


def test_a_stored_comparison_that_decided_no_gating_metric_is_inconclusive():
    """Stored path (two-sided Holm, no outcome): every gating ratio metric undecided is inconclusive, not ok;
    one decided metric makes it ok; the absolute error-rate rule and observe-only metrics do not count."""
    def stored(*verdicts: MetricVerdict) -> Judgement:
        return Judgement(status="ok", verdicts=list(verdicts), baseline=BaselineRef(path="b.json"))

    none_decided = stored(_mv("ttft_ms.p50", "inconclusive", method="log-welch"),
                          _mv("e2e_ms.p50", "inconclusive", method="log-welch"),
                          _mv("tpot_ms.mean", "no_change", method="log-welch", observe_only=True),
                          _mv("error_rate", "no_change", method="absolute"))
    assert none_decided.undecided
    assert case_status(error=None, trial_statuses=["ok"], judgement=none_decided) == "inconclusive"
    one_decided = stored(_mv("ttft_ms.p50", "no_change", method="log-welch"),
                         _mv("e2e_ms.p50", "inconclusive", method="log-welch"))
    assert case_status(error=None, trial_statuses=["ok"], judgement=one_decided) == "ok"
    assert case_status(error=None, trial_statuses=["ok"], judgement=stored()) == "ok"  # nothing to judge: not undecided


def test_inconclusive_is_counted_on_its_own_and_references_are_not_cases():
    assert STATUS_GROUPS["inconclusive"] is StatusGroup.INCONCLUSIVE
    c = count_statuses(["ok", "regression", "inconclusive", "inconclusive", "reference", "reference", "no_baseline"])
    assert (c.cases, c.compared, c.regression, c.inconclusive, c.not_compared) == (5, 2, 1, 2, 1)


def _case(**ab) -> Case:
    spec = ScenarioFile(name="cpu-short-prompt-long-output", num_requests=1, prompt_tokens=1, max_tokens=1,
                        concurrency=1, **ab)
    return Case("cpu", EngineConfig(id="b", kind="sim"), ModelSpec("m", None, "m"),
                Scenario(spec.name, spec.name, spec))


def test_inconclusive_passes_by_default_and_fails_under_strict():
    o = CaseOutcome(_case(), machine=None, judgement=_live_judgement())
    assert o.status == "inconclusive"
    action, line = o.gate()
    assert action == "pass" and line.startswith("INCONCLUSIVE: ") and "detectable: 7.9%" in line
    strict = CaseOutcome(_case(), machine=None, judgement=_live_judgement(), strict=True)
    action, line = strict.gate()
    assert action == "fail" and "INCONCLUSIVE under --perf-strict" in line
    assert CaseOutcome(_case(), machine=None, judgement=_live_judgement("no_change"), strict=True).gate().action == "pass"


def test_verdicts_json_carries_outcome_detectable_effect_and_blocks(tmp_path):
    record = CaseOutcome(_case(), machine=None, judgement=_live_judgement()).record()
    assert (record.status, record.outcome, record.detectable_pct) == ("inconclusive", "inconclusive", 7.9)
    path = VerdictsFile(cases=[record]).write(tmp_path / "verdicts.json")
    raw = json.loads(path.read_text())["cases"][0]
    assert raw["outcome"] == "inconclusive" and raw["detectable_pct"] == 7.9
    assert len(raw["live"]["blocks"]) == 25 and raw["live"]["blocks"][-1]["dropped"] == "client-bound"
    assert [lk["blocks"] for lk in raw["live"]["looks"]] == [12, 18, 24] and raw["live"]["span_s"] == 298.0
    assert load_verdicts(path).cases[0] == record


# -- the terminal ----------------------------------------------------------------------------------------------

def test_the_ab_table_gives_the_paired_estimate_as_the_answer_and_no_medians():
    rows = ab_table(_live_judgement())
    assert rows[0] == ("outcome INCONCLUSIVE after 24 paired blocks; primary itl_per_token_ms.p50, "
                       "detectable here 7.9%")
    assert "median" not in " ".join(rows).lower() and "672" not in " ".join(rows)  # trial medians are not shown
    itl = next(r for r in rows if r.startswith("itl_per_token_ms.p50"))
    assert re.search(r"\+2\.0%\s+\[-3\.0%, \+8\.0%\]\s+99\.20%\s+inconclusive \(primary\)", itl), itl
    assert "paired estimate" in rows[-1]


def test_the_summary_line_counts_inconclusive_apart_and_says_strict_fails_it(tmp_path):
    counts = count_statuses(["inconclusive", "ok", "reference"])
    lines = session_summary([CaseLines("inconclusive", "b-m-s", ("x",))], [], counts, machine=None, strict=False,
                            results_dir=tmp_path)
    assert lines[0].startswith("INCONCLUSIVE  b-m-s")
    assert "2 cases on machine (unnamed): 1 compared (0 regressed), 1 inconclusive, 0 NOT COMPARED, 0 failed" in lines
    assert any("inconclusive cases (compared, nothing decided) pass; --perf-strict fails them" in ln for ln in lines)


# -- the live A/B's run ----------------------------------------------------------------------------------------

class _Runner:
    """A RunsTrials whose B side is 3% slower; clocks make every window 4 s, 1 s apart."""

    def __init__(self, bound=()):
        self.events, self.clock, self.bound = [], 1000.0, set(bound)

    def boot(self, engine, model):
        self.events.append(("boot", engine.id))

    def prepare(self, engine, model, scenario, trials):
        self.events.append(("prepare", engine.id, tuple(trials)))
        return {t: f"prompts of {engine.id} trial {t}" for t in trials}, None

    def run(self, plan):
        from perfgate.session.trials import Trials

        assert plan.prepared == {plan.start: f"prompts of {plan.engine.id} trial {plan.start}"}  # built before
        self.events.append(("run", plan.engine.id))
        slow = 1.03 if plan.engine.id == "b" else 1.0
        k = len(self.events)
        m = {"itl_per_token_ms.p50": 5.0 * slow * (1 + 0.01 * (k % 3)), "e2e_ms.p50": 100.0 * slow,
             "output_throughput": 50.0 / slow, "ttft_ms.p50": 10.0 * slow, "error_rate": 0.0}
        r = SimpleNamespace(status="client_bound" if plan.start in self.bound and plan.engine.id == "b" else "ok",
                            test_id=plan.test_id, trial=plan.start, failure_reason="stall", clock_origin_s=self.clock,
                            summary=SimpleNamespace(metrics=m, duration_s=4.0), contention=None,
                            environment=SimpleNamespace(engine=SimpleNamespace(version="1")))
        self.clock += 5.0
        return Trials((r,))


def test_a_live_ab_boots_both_sides_before_block_0_and_records_its_blocks_and_looks():
    from perfgate.session.live_ab import LiveSettings, run_live_ab

    runner = _Runner(bound={2})
    case = _case(ab_min_blocks=4, ab_max_blocks=8, ab_look_every=2)
    out = run_live_ab(CaseOutcome(case, machine=None), runner, EngineConfig(id="a", kind="sim"), None,
                      LiveSettings(machine=None))
    # block 0 is a pair: no boot inside, and both sides' prompts for a look's worth of blocks are built before it
    assert runner.events[:5] == [("boot", "a"), ("boot", "b"), ("prepare", "a", (0, 1)), ("prepare", "b", (0, 1)),
                                 ("run", "a")]
    preparing = [e for e in runner.events if e[0] == "prepare"]
    assert [e[2] for e in preparing[::2]] == [(k, k + 1) for k in range(0, 2 * len(preparing[::2]), 2)]
    runs = runner.events.index(("prepare", "a", (2, 3)))
    assert runner.events[runs - 2:runs] == [("run", "b"), ("run", "a")]  # between blocks, never inside one
    j = out.judgement
    assert j is not None and j.primary_metric == "itl_per_token_ms.p50" and j.live is not None  # the family's primary
    kept = [b for b in j.live.blocks if b.dropped is None]
    assert len(kept) == len(out.results) and [b.block for b in j.live.blocks if b.dropped] == [2]
    assert all(b.ratio and 1.0 < b.ratio < 1.1 for b in kept)
    assert [lk.blocks for lk in j.live.looks] == list(range(4, len(out.results) + 1, 2))
    assert j.live.looks[-1].ratio == pytest.approx(next(v.ratio for v in j.verdicts if v.metric == j.primary_metric))
    assert all(lk.boundary >= 1.05 for lk in j.live.looks)  # never below min effect
    # the printed time is the comparison's own span (first window start to last window end)
    n_trials = 2 * (len(out.results) + 1)  # the dropped block 2 ran A, then B's client-bound trial
    note = next(n for n in out.notes if n.startswith("live A/B vs a:"))
    span = 5 * n_trials - 1
    assert f"{len(out.results)} blocks in {span} s ({4 * n_trials / span:.0%} of it in measurement windows)" in note
    assert "installs and boots before block 0:" in note


def test_the_scenario_names_the_primary_metric():
    from perfgate.session.live_ab import plan_for

    assert plan_for(_case().scenario.spec).primary_metric is None  # the family's default
    spec = _case(ab_primary_metric="e2e_ms.p50").scenario.spec
    assert plan_for(spec).primary_metric == "e2e_ms.p50" and plan_for(spec).alpha == 0.01


# -- the report ------------------------------------------------------------------------------------------------

@pytest.fixture
def live_dir(tmp_path):
    """The fixture's decode-heavy trials of 0.31.0 and 0.32.0, recorded as a live A/B (0.31.0 the reference)."""
    d = tmp_path / "run"
    (d / "results").mkdir(parents=True)
    for p in (FIXTURE / "results").glob("vllm-0.3[12].0-tiny-llama-decode-heavy.trial*.result.json"):
        shutil.copy(p, d / "results" / p.name)
    b = CaseOutcome(_case(), machine=None, judgement=_live_judgement()).record()
    b = b.model_copy(update={"case_id": "vllm-0.32.0-tiny-llama-decode-heavy", "engine": "vllm",
                             "engine_version": "0.32.0", "scenario": "decode-heavy"})
    a = CaseVerdict(case_id="vllm-0.31.0-tiny-llama-decode-heavy", engine="vllm", engine_version="0.31.0", model="m",
                    scenario="decode-heavy", hardware="cpu", status="reference", reason="reference (A)")
    VerdictsFile(cases=[b, a]).write(d / "verdicts.json")
    return d


def test_the_report_draws_the_blocks_gives_one_answer_and_prints_no_none(live_dir, tmp_path):
    html_path, md_path = render_report([live_dir], tmp_path / "out")
    html = html_path.read_text()
    text = re.sub(r"<svg.*?</svg>", "", html, flags=re.S)
    assert "None" not in re.sub(r"<[^>]+>", " ", text)  # e.g. "baseline: None (engine 0.31.0, None)"
    assert 'data-chart="ab_blocks"' in html and "1 dropped and re-run: 1 client-bound" in html
    assert "reference: live engine <code>vllm-0.31.0</code> 0.31.0, booted in the same session" in html
    assert 'data-testid="ab"' not in html  # no table of medians beside the paired estimate
    assert "(paired estimate)" in html and "(descriptive)" in html
    answer = "inconclusive: itl_per_token_ms.p50 +2.0% [-3.0%, +8.0%] (paired estimate, 99.20% interval), " \
             "24 blocks in 298 s, detectable 7.9%"
    assert answer in html
    assert "· 1 cases" in html and 'data-testid="count-inconclusive"><b>1</b>' in html  # the A side is no case
    md = md_path.read_text()
    assert "1 inconclusive" in md and "— 1 cases" in md and answer in md
    assert gather([live_dir], tmp_path).counts().inconclusive == 1
    assert render_markdown(gather([live_dir], tmp_path)) == md


def test_the_failure_line_leads_with_the_primary_metric():
    j = _live_judgement("regression")
    j = j.model_copy(update={"verdicts": [_mv("e2e_ms.p50", "regression", 1.19), _mv("itl_per_token_ms.p50",
                                                                                        "regression", 1.2)]})
    assert j.failure_line().startswith("itl_per_token_ms.p50 +20.0%") and "(and 1 more regressed metrics)" in \
        j.failure_line()


def test_the_ab_group_is_not_part_of_the_workload_fingerprint():
    from perfgate.judge.baselines import _workload_identity

    plain, planned = _case().scenario, _case(ab_min_blocks=6, ab_max_blocks=72, ab_alpha=0.05,
                                             ab_primary_metric="e2e_ms.p50").scenario
    assert _workload_identity(plain.workload()) == _workload_identity(planned.workload())
