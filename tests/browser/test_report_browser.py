"""The report in a real browser: Debian's Chromium, headless, offline flags.

Renders the committed fixture results (a CPU runner and a GPU runner merged),
loads the page from a file in a fresh tab, reads the DOM Chromium built,
checks the tab's own network log for any request other than the page itself,
and saves screenshots (test output, and reports/screenshots/ when reports/ exists).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from perfgate.report import render_report

from .cdp import Chrome

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = [ROOT / "fixtures" / "report" / "run", ROOT / "fixtures" / "report" / "gpu"]
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and Path(p).exists()), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--hide-scrollbars"]
REGRESSED = "vllm-0.32.0-tiny-llama-decode-heavy"
CRASHED = "vllm-0.32.0-tiny-llama-crashes"
CLIENT_BOUND = "vllm-0.32.0-tiny-llama-overload"

if CHROMIUM is None:
    if os.environ.get("CI"):
        pytest.fail("chromium is required under CI (apt-get install -y chromium)", pytrace=False)
    pytest.skip("chromium is not installed (apt-get install -y chromium); set CI=1 to make this a failure",
                allow_module_level=True)

# Before the page's own content: record CSP violations (a blocked external load never reaches the network log).
RECORD_CSP = ("window.__csp = []; document.addEventListener('securitypolicyviolation',"
              " e => window.__csp.push(e.blockedURI + ' ' + e.violatedDirective));")

# What a reader sees, read from the DOM the browser built.
FACTS = """(() => {
  const q = s => document.querySelector(s), qa = s => [...document.querySelectorAll(s)];
  const text = el => el ? el.innerText.trim() : null;
  const row = (c, hw) => q(`table[data-testid=matrix] tr[data-case="${c}"]` + (hw ? `[data-hardware="${hw}"]` : ''));
  const cell = (r, m) => r && r.querySelector(`td[data-metric="${m}"]`);
  const section = (c, hw) => q(`section.case[data-case="${c}"]` + (hw ? `[data-hardware="${hw}"]` : ''));
  const counts = {};
  for (const t of qa('[data-testid^=count-]')) counts[t.dataset.testid.slice(6)] = parseInt(t.querySelector('b').innerText);
  const reg = row('%(reg)s', 'cpu'), crash = row('%(crash)s');
  const improved = qa('table[data-testid=verdicts] tr[data-verdict=improvement]').map(r => r.dataset.metric);
  const inconclusive = qa('table[data-testid=verdicts] tr[data-verdict=inconclusive]');
  const crashSection = section('%(crash)s'), boundRow = row('%(bound)s'), boundSection = section('%(bound)s');
  return {
    title: document.title, csp: window.__csp, counts,
    regRowStatus: reg && reg.dataset.status, regStatusText: reg && text(reg.querySelector('.v')),
    regTtft: text(cell(reg, 'ttft_ms.p50')),
    regTtftColour: cell(reg, 'ttft_ms.p50') && getComputedStyle(cell(reg, 'ttft_ms.p50').querySelector('.v')).backgroundColor,
    regSectionReason: text(section('%(reg)s', 'cpu').querySelector('[data-testid=reason]')),
    improved,
    inconclusiveText: inconclusive.length ? text(inconclusive[0]) : null,
    crashStatusText: crash && text(crash.querySelector('.v')),
    crashCells: crash ? [...crash.querySelectorAll('td')].slice(7).map(td => td.innerText.trim()) : null,
    crashReason: text(crashSection && crashSection.querySelector('[data-testid=reason]')),
    crashHasTable: !!(crashSection && crashSection.querySelector('table[data-testid=verdicts], table[data-testid=medians], svg')),
    boundStatusText: boundRow && text(boundRow.querySelector('.v')),
    boundCells: boundRow ? [...boundRow.querySelectorAll('td')].slice(7).map(td => td.innerText.trim()) : null,
    boundReason: text(boundSection && boundSection.querySelector('[data-testid=reason]')),
    boundHasNumbers: !!(boundSection && boundSection.querySelector('table[data-testid=verdicts], table[data-testid=medians], svg')),
    gpuRowStatus: (row('%(reg)s', 'NVIDIA H100 80GB HBM3') || {dataset: {}}).dataset.status,
    abTables: qa('table[data-testid=ab]').map(t => t.dataset.hardware + ' ' + [...t.querySelectorAll('th[data-engine]')].map(th => th.dataset.engine + ' ' + th.dataset.version).join(' / ')),
    svgs: qa('svg').length,
    svgSized: qa('svg').every(s => s.getBoundingClientRect().width > 100 && s.getBoundingClientRect().height > 50),
    logLinks: qa('a[data-testid=log-link]').map(a => a.getAttribute('href')),
    images: qa('img, script[src], link[href], iframe, object, embed').length,
    historyTrends: qa(`section.case[data-case="%(reg)s"][data-hardware="cpu"] figure[data-chart=trend] svg`)
      .filter(s => s.getBoundingClientRect().width > 100).map(s => s.closest('figure').dataset.metric),
    historyRows: qa(`section.case[data-case="%(reg)s"][data-hardware="cpu"] table[data-testid=change-points] tr[data-metric]`)
      .map(r => r.dataset.metric + ' ' + r.dataset.run + ' ' + (r.querySelector('.v-regression') ? 'REGRESSION' : '')),
    historyNew: text(q(`section.case[data-case="%(reg)s"][data-hardware="cpu"] [data-testid=new-change-point]`)),
    gpuHistory: !!q(`section.case[data-case="%(reg)s"][data-hardware="NVIDIA H100 80GB HBM3"] [data-testid=history]`),
    duplicateIds: (() => { const ids = qa('[id]').map(e => e.id); return ids.filter((x, i) => ids.indexOf(x) !== i); })(),
  };
})()""" % {"reg": REGRESSED, "crash": CRASHED, "bound": CLIENT_BOUND}


@pytest.fixture(scope="module")
def browsed(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    html_path, _ = render_report(FIXTURES, out)
    chrome = Chrome(CHROMIUM, FLAGS, out / "profile")
    try:
        session = chrome.open_page(html_path.as_uri(), init_script=RECORD_CSP)
        facts = chrome.evaluate(session, FACTS)
        requests = chrome.requests(session)
        failed = [m for m in chrome.events if m.get("method") == "Network.loadingFailed" and m.get("sessionId") == session]
        top = chrome.screenshot(session)
        full = chrome.screenshot(session, full_page=True)
    finally:
        chrome.close()
    return {"html": html_path, "facts": facts, "requests": requests, "failed": failed, "top": top, "full": full,
            "out": out}


def test_regression_is_shown_as_such(browsed):
    f = browsed["facts"]
    assert f["title"] == "perfgate report"
    assert f["counts"]["regressions"] == 1
    assert f["regRowStatus"] == "regression" and f["regStatusText"] == "REGRESSION"
    assert f["regTtft"].startswith("REGRESSION +")  # readable without colour
    assert f["regTtftColour"] == "rgb(255, 235, 233)"  # and red
    assert f["gpuRowStatus"] == "ok"  # the same case id on the GPU runner is its own row


def test_improvement_and_inconclusive_metric_are_shown(browsed):
    f = browsed["facts"]
    assert "output_throughput" in f["improved"] and f["counts"]["improvements"] >= 1
    assert "inconclusive" in f["inconclusiveText"] and "detectable ±" in f["inconclusiveText"]
    assert f["counts"]["inconclusive-metrics"] >= 1


def test_failed_and_client_bound_runs_show_status_and_reason_never_numbers(browsed):
    f = browsed["facts"]
    assert f["counts"]["failed"] == 2  # failed + client-bound
    assert f["crashStatusText"] == "FAILED"
    assert f["crashCells"] and all(c == "—" for c in f["crashCells"])
    assert f["crashReason"].startswith("all 8 requests failed")
    assert not f["crashHasTable"]
    assert f["boundStatusText"] == "CLIENT-BOUND"
    assert f["boundCells"] and all(c == "—" for c in f["boundCells"])
    assert "schedule lag p99 212 ms" in f["boundReason"]
    assert not f["boundHasNumbers"]


def test_comparisons_charts_and_logs(browsed):
    f = browsed["facts"]
    assert "cpu vllm 0.31.0 / vllm 0.32.0" in f["abTables"]
    assert "NVIDIA H100 80GB HBM3 sglang 0.5.0 / vllm 0.32.0" in f["abTables"]
    assert f["svgs"] >= 20 and f["svgSized"]
    assert f["logLinks"] and not any("://" in h or h.startswith("/") for h in f["logLinks"])
    assert f["images"] == 0
    assert f["duplicateIds"] == []


def test_history_trends_and_open_change_points(browsed):
    """The CPU runner's history.json (12 nights, ITL and e2e +14% from night 9 with an engine upgrade): a trend per
    key metric drawn at a readable size, the change points in their table with the gated ones marked, the new
    change point's line; the same test id on the GPU runner has no history of its own, so none is shown."""
    f = browsed["facts"]
    assert f["historyTrends"] == ["ttft_ms.p50", "itl_per_token_ms.p50", "e2e_ms.p50", "output_throughput"]
    assert "itl_per_token_ms.p50 9 REGRESSION" in f["historyRows"] and "e2e_ms.p50 9 REGRESSION" in f["historyRows"]
    assert f["historyNew"].startswith("e2e_ms.p50 +14.4%") and "since run 9" in f["historyNew"]
    assert "engine 0.31.0 → 0.32.0" in f["historyNew"]
    assert not f["gpuHistory"]


def test_page_makes_no_network_request(browsed):
    # The tab's own requests: only the document itself; nothing blocked by the CSP either.
    assert browsed["requests"] == [browsed["html"].as_uri()], browsed["requests"]
    assert browsed["failed"] == []
    assert browsed["facts"]["csp"] == []


def test_screenshots(browsed):
    for name in ("top", "full"):
        png = browsed[name]
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    shots = {"report.png": browsed["top"], "report-full.png": browsed["full"]}
    for name, png in shots.items():
        (browsed["out"] / name).write_bytes(png)
    if (ROOT / "reports").is_dir():
        keep = ROOT / "reports" / "screenshots"
        keep.mkdir(exist_ok=True)
        for name, png in shots.items():
            (keep / name).write_bytes(png)


LIVE_FACTS = """(() => {
  const q = s => document.querySelector(s);
  const chart = q('figure[data-chart=ab_blocks] svg');
  return {
    text: document.body.innerText,
    answer: q('[data-testid=live-answer]') && q('[data-testid=live-answer]').innerText.trim(),
    chartSized: !!chart && chart.getBoundingClientRect().width > 200 && chart.getBoundingClientRect().height > 100,
    inconclusive: parseInt(q('[data-testid=count-inconclusive] b').innerText),
    medianTables: document.querySelectorAll('table[data-testid=ab]').length,
  };
})()"""


def test_a_live_ab_reads_as_one_answer_with_its_blocks_drawn_and_no_none(tmp_path):
    """A live A/B (the fixture's 0.31.0 and 0.32.0 trials recorded as one, machine unnamed): what a reader sees."""
    from perfgate.schema.verdict import (BaselineRef, BlockPoint, CaseVerdict, LiveRecord, LookPoint, MetricVerdict,
                                         VerdictsFile)

    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    for p in (FIXTURES[0] / "results").glob("vllm-0.3[12].0-tiny-llama-decode-heavy.trial*.result.json"):
        shutil.copy(p, run / "results" / p.name)
    mv = MetricVerdict(metric="itl_per_token_ms.p50", verdict="inconclusive", ratio=1.02, ci_low=0.97, ci_high=1.08,
                       change_pct=2.0, mde_pct=7.9, n_baseline=24, n_current=24, direction="lower", level=0.992,
                       min_effect=0.05, method="paired-log", baseline_median=672.3, current_median=662.6)
    live = LiveRecord(primary_metric=mv.metric, min_effect=0.05,
                      blocks=[BlockPoint(block=k, ratio=1.0 + 0.03 * (-1) ** k) for k in range(24)],
                      looks=[LookPoint(blocks=n, ratio=1.02, ci_low=0.96, ci_high=1.08, boundary=1.08)
                             for n in (12, 18, 24)], span_s=298.0, setup_s=120.0)
    b = CaseVerdict(case_id="vllm-0.32.0-tiny-llama-decode-heavy", engine="vllm", engine_version="0.32.0", model="m",
                    scenario="decode-heavy", hardware="cpu", status="inconclusive", verdicts=[mv],
                    baseline=BaselineRef(live_engine="vllm-0.31.0", engine_version="0.31.0"), outcome="inconclusive",
                    detectable_pct=7.9, live=live)
    a = CaseVerdict(case_id="vllm-0.31.0-tiny-llama-decode-heavy", engine="vllm", engine_version="0.31.0", model="m",
                    scenario="decode-heavy", hardware="cpu", status="reference")
    VerdictsFile(cases=[b, a]).write(run / "verdicts.json")
    html_path, _ = render_report([run], tmp_path / "out")
    chrome = Chrome(CHROMIUM, FLAGS, tmp_path / "profile")
    try:
        facts = chrome.evaluate(chrome.open_page(html_path.as_uri()), LIVE_FACTS)
    finally:
        chrome.close()
    assert "None" not in facts["text"]
    assert facts["answer"].startswith("inconclusive: itl_per_token_ms.p50 +2.0% [-3.0%, +8.0%] (paired estimate")
    assert facts["chartSized"] and facts["inconclusive"] == 1 and facts["medianTables"] == 0
