"""The report from committed fixture results: content, Markdown summary, merging, no external references."""

import re
import shutil
from pathlib import Path

from perfgate.report import gather, render_markdown, render_report

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "report" / "run"


def test_html_has_every_kind_of_outcome(tmp_path):
    html_path, md_path = render_report([FIXTURE], tmp_path)
    html = html_path.read_text()
    assert 'data-case="vllm-0.32.0-tiny-llama-decode-heavy" data-status="regression"' in html
    assert 'data-metric="output_throughput" data-verdict="improvement"' in html
    assert 'data-verdict="inconclusive"' in html and "detectable ±" in html
    assert 'data-case="vllm-0.32.0-tiny-llama-crashes" data-status="failed"' in html
    assert "all 8 requests failed" in html
    assert 'data-testid="ab"' in html  # 0.31.0 vs 0.32.0 on the same scenario
    assert "Throughput against concurrency" in html and "sweep — tiny-llama (concurrency)" in html
    # No external resource of any kind: no URL scheme in src/href, no http(s) anywhere but the CSP meta.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert html.count("http") == 1 and "http-equiv" in html
    assert len(html) < 400_000


def test_failed_runs_show_no_numbers():
    data = gather([FIXTURE], FIXTURE)
    crashed = next(c for c in data.cases if c.status == "failed")
    assert not crashed.has_numbers and crashed.reason.startswith("all 8 requests failed")


def test_markdown_puts_regressions_first_and_caps_length():
    data = gather([FIXTURE], FIXTURE)
    md = render_markdown(data)
    first_case = next(line for line in md.splitlines() if line.startswith("- **"))
    assert "REGRESSION" in first_case and "ttft_ms.p50 +" in md
    capped = render_markdown(data, max_lines=8)
    assert len(capped.splitlines()) == 8 and "more lines in the HTML report" in capped


def test_merging_two_result_directories(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(FIXTURE, a)
    b.mkdir()
    (b / "results").mkdir()
    for p in (a / "results").glob("vllm-0.31.0*"):
        p.rename(b / "results" / p.name)
    merged = gather([a, b], tmp_path)
    assert len(merged.cases) == 8
    assert any(c.version == "0.31.0" for c in merged.cases)


def test_unreadable_result_is_listed_not_dropped(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(FIXTURE, d)
    (d / "results" / "broken.result.json").write_text("{ nope")
    data = gather([d], tmp_path)
    assert data.unreadable and "broken.result.json" in data.unreadable[0]
