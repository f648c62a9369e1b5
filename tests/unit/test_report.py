"""The report from committed fixture results: content, Markdown summary, merging, no external references."""

import json
import re
import shutil
from pathlib import Path

import pytest

from perfgate import CaseVerdict, MetricVerdict, VerdictsFile, VerdictsFileError, load_verdicts
from perfgate.report import gather, render_markdown, render_report

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "report"
FIXTURE = FIXTURES / "run"  # a CPU runner
GPU = FIXTURES / "gpu"  # a GPU runner: same case id on an H100, vllm vs sglang, telemetry
REGRESSED = "vllm-0.32.0-tiny-llama-decode-heavy"
CRASHED = "vllm-0.32.0-tiny-llama-crashes"
CLIENT_BOUND = "vllm-0.32.0-tiny-llama-overload"


@pytest.fixture(scope="module")
def cpu_report(tmp_path_factory):
    """(index.html path, summary.md path) rendered from the CPU runner's fixture results."""
    return render_report([FIXTURE], tmp_path_factory.mktemp("cpu"))


@pytest.fixture(scope="module")
def merged_html(tmp_path_factory):
    return render_report([FIXTURE, GPU], tmp_path_factory.mktemp("merged"))[0].read_text()


def _external_refs(html: str) -> list[str]:
    """Anything the page could load from elsewhere: URL-ish src/href/action, CSS url(), @import."""
    refs = re.findall(r'(?:src|href|action|srcset|poster|data)\s*=\s*["\']?\s*((?:[a-z][a-z0-9+.-]*:)?//[^"\'\s>]*)', html, re.I)
    refs += re.findall(r'url\(\s*["\']?(?!#)([^)"\']+)', html, re.I)
    refs += re.findall(r'@import', html, re.I)
    return refs


def test_html_has_every_kind_of_outcome(cpu_report):
    html_path, md_path = cpu_report
    assert md_path.name == "summary.md" and md_path.read_text().startswith("## perfgate")
    html = html_path.read_text()
    assert f'data-case="{REGRESSED}" data-status="regression"' in html
    assert 'data-metric="output_throughput" data-verdict="improvement"' in html
    assert 'data-verdict="inconclusive"' in html and "detectable ±" in html
    assert f'data-case="{CRASHED}" data-status="failed"' in html
    assert "all 8 requests failed" in html
    assert 'data-testid="ab"' in html  # 0.31.0 vs 0.32.0 on the same scenario
    assert "Throughput against load" in html and "sweep — tiny-llama (concurrency)" in html
    assert html.count("<svg") >= 2 * 7 + 1  # TTFT + ITL/TPOT per case with numbers, one sweep chart
    # the relative link to the server log
    assert re.search(r'<a href="[^"]*logs/vllm-0\.32\.0\.log" data-testid="log-link">', html)
    # No external resource of any kind; "http" only in the CSP meta and the recorded engine base_url text.
    assert not _external_refs(html), _external_refs(html)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "https://" not in html
    assert len(html) < 300_000


def test_failed_case_shows_reason_and_no_numbers(cpu_report):
    html = cpu_report[0].read_text()
    row = re.search(rf'<tr data-case="{CRASHED}".*?</tr>', html, re.S).group(0)
    assert "FAILED" in row and not re.search(r"\d+\.\d", row.split("</td>", 6)[-1])
    section = re.search(rf'<section class="case"[^>]*data-case="{CRASHED}".*?</section>', html, re.S).group(0)
    assert 'data-testid="reason"' in section and "all 8 requests failed" in section
    assert "<svg" not in section and 'data-testid="verdicts"' not in section and 'data-testid="medians"' not in section
    data = gather([FIXTURE], FIXTURE)
    crashed = next(c for c in data.cases if c.status == "failed")
    assert not crashed.has_numbers and crashed.reason.startswith("all 8 requests failed")


def test_client_bound_case_hides_the_numbers_it_has(cpu_report):
    # Its result files carry summaries and requests, but they describe the load generator, not the engine.
    html = cpu_report[0].read_text()
    row = re.search(rf'<tr data-case="{CLIENT_BOUND}".*?</tr>', html, re.S).group(0)
    assert 'data-status="client_bound"' in row and "CLIENT-BOUND" in row
    assert row.count("<td class=\"muted\">—</td>") == 6
    section = re.search(rf'<section class="case"[^>]*data-case="{CLIENT_BOUND}".*?</section>', html, re.S).group(0)
    assert "schedule lag p99 212 ms" in section and "<svg" not in section
    assert 'data-testid="medians"' not in section and 'data-testid="verdicts"' not in section
    assert all(CLIENT_BOUND not in name for name in re.findall(r"<figcaption>(.*?)</figcaption>", html))


def test_markdown_puts_regressions_first_and_caps_length():
    data = gather([FIXTURE, GPU], FIXTURE)
    md = render_markdown(data)
    cases = [line for line in md.splitlines() if line.startswith("- **")]
    assert "REGRESSION" in cases[0] and "FAILED" in cases[1] and "CLIENT-BOUND" in cases[2]
    assert "schedule lag p99 212 ms" in md
    assert "ttft_ms.p50 +" in md and "regression" in md
    # improvements before the unchanged and the new
    assert cases.index(next(c for c in cases if "prefill-heavy" in c)) < cases.index(next(c for c in cases if "no baseline" in c))
    capped = render_markdown(data, max_lines=9)
    assert len(capped.splitlines()) <= 9 and re.search(r"… and \d+ more", capped)
    assert "REGRESSION" in capped  # whole entries, regressions kept
    small = render_markdown(data, max_bytes=700)
    assert len(small.encode()) <= 700 and "… and" in small


def test_markdown_count_of_the_rest_is_exact():
    data = gather([FIXTURE, GPU], FIXTURE)
    full = [line for line in render_markdown(data, max_lines=1000).splitlines() if line.startswith("- **")]
    capped = render_markdown(data, max_lines=12)
    shown = [line for line in capped.splitlines() if line.startswith("- **")]
    more = int(re.search(r"… and (\d+) more", capped).group(1))
    assert len(shown) + more == len(full)


def test_merging_two_result_directories(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(FIXTURE, a)
    b.mkdir()
    (b / "results").mkdir()
    for p in (a / "results").glob("vllm-0.31.0*"):
        p.rename(b / "results" / p.name)
    merged = gather([a, b], tmp_path)
    assert len(merged.cases) == 9
    assert any(c.version == "0.31.0" for c in merged.cases)


def test_merging_runners_keeps_the_same_case_on_different_hardware_apart(merged_html, tmp_path):
    data = gather([FIXTURE, GPU], tmp_path)
    same = [c for c in data.cases if c.case_id == REGRESSED]
    assert sorted(c.hardware for c in same) == ["NVIDIA H100 80GB HBM3", "cpu"]
    cpu, gpu = sorted(same, key=lambda c: c.hardware != "cpu")
    assert cpu.status == "regression" and gpu.status == "ok" and len(gpu.results) == 3
    html = merged_html
    # engine A vs B on the H100 (sglang vs vllm), version A vs B on cpu
    assert 'data-testid="ab" data-model="tiny-llama" data-scenario="decode-heavy" data-hardware="NVIDIA H100 80GB HBM3"' in html
    assert 'data-engine="sglang"' in html and "better" in html
    assert "GPU memory (MiB)" in html and "GPU power (W)" in html
    assert re.search(r'href="[^"]*gpu/logs/sglang-0\.5\.0\.log"', html)


def test_charts_belong_to_their_own_case_and_ids_are_unique(merged_html):
    html = merged_html
    sections = re.findall(r'<section class="case".*?</section>', html, re.S)
    cpu = next(s for s in sections if f'data-case="{REGRESSED}"' in s and 'data-hardware="cpu"' in s)
    gpu = next(s for s in sections if f'data-case="{REGRESSED}"' in s and 'data-hardware="NVIDIA' in s)
    assert 'data-chart="gpu_mem"' in gpu and 'data-chart="gpu_power"' in gpu
    assert 'data-chart="ttft"' in cpu and 'data-chart="gpu_mem"' not in cpu
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))
    assert all(ref in ids for ref in re.findall(r'url\(#([^)]+)\)', html))


def test_ab_ratios_follow_each_metrics_direction(tmp_path):
    from perfgate.report.render import _ab_rows

    data = gather([GPU], tmp_path)
    (_, group), = data.ab_groups()
    assert [c.engine for c in group] == ["sglang", "vllm"]
    rows = {r["key"]: r for r in _ab_rows(group)}
    # vllm has higher TTFT (worse, lower is better) and lower throughput (worse, higher is better) than sglang
    assert rows["ttft_ms.p50"]["cells"][1]["tag"] == "worse" and rows["ttft_ms.p50"]["cells"][1]["ratio"] > 1
    assert rows["output_throughput"]["cells"][1]["tag"] == "worse" and rows["output_throughput"]["cells"][1]["ratio"] < 1


def test_log_recorded_on_another_machine_is_found_under_logs(tmp_path):
    d = tmp_path / "downloaded"
    shutil.copytree(FIXTURE, d)
    for p in (d / "results").glob("*.result.json"):
        doc = json.loads(p.read_text())
        doc["environment"]["engine"]["log_path"] = "/runner/work/reports/logs/" + Path(doc["environment"]["engine"]["log_path"]).name
        p.write_text(json.dumps(doc))
    out = tmp_path / "out"
    data = gather([d], out)
    assert all(c.log_href == "../downloaded/logs/" + Path(c.first.environment.engine.log_path).name
               for c in data.cases if c.first)
    (d / "logs" / "vllm-0.31.0.log").unlink()
    html = render_report([d], out)[0].read_text()
    assert 'data-testid="log-missing"' in html and "/runner/work/reports/logs/vllm-0.31.0.log" in html


def test_unreadable_result_is_listed_not_dropped(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(FIXTURE, d)
    (d / "results" / "broken.result.json").write_text("{ nope")
    data = gather([d], tmp_path)
    assert data.unreadable and "broken.result.json" in data.unreadable[0]
    assert "unreadable result" in render_markdown(data)


def test_results_without_verdicts_render_medians(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(FIXTURE, d)
    (d / "verdicts.json").unlink()
    html = render_report([d], tmp_path / "out")[0].read_text()
    assert 'data-testid="medians"' in html and 'data-status="regression"' not in html
    assert f'data-case="{CRASHED}" data-status="failed"' in html  # from the result files themselves


def test_sweep_by_request_rate_with_a_non_numeric_parameter(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(FIXTURE, d)
    for p in (d / "results").glob("*sweep*.result.json"):
        doc = json.loads(p.read_text())
        n = doc["scenario"].split("=")[1].rstrip("]")
        doc["scenario"] = f"poisson[dataset=chat,request_rate={n}]"
        doc["test_id"] = "vllm-0.32.0-tiny-llama-" + doc["scenario"]
        p.write_text(json.dumps(doc))
    html = render_report([d], tmp_path / "out")[0].read_text()
    assert "poisson — tiny-llama (request_rate)" in html and "dataset=chat" in html


# --- verdicts.json schema ---------------------------------------------------------------------------------------

def test_fixture_verdicts_validate_and_round_trip(tmp_path):
    f = load_verdicts(FIXTURE / "verdicts.json")
    assert f.schema_version == 2 and len(f.cases) == 9
    case = f.by_case()[REGRESSED]
    assert isinstance(case, CaseVerdict) and case.status == "regression" and case.baseline.path.endswith(".json")
    v = {m.metric: m for m in case.verdicts}["ttft_ms.p50"]
    assert isinstance(v, MetricVerdict) and v.verdict == "regression" and v.direction == "lower"
    assert v.ci_low <= v.ratio <= v.ci_high
    out = f.write(tmp_path / "verdicts.json")
    assert load_verdicts(out) == f
    assert not list(tmp_path.glob("*.tmp*"))


def test_record_from_a_stats_verdict():
    from perfgate.judge.stats import compare_summaries

    base = [{"ttft_ms.p50": x} for x in (10.0, 10.1, 9.9, 10.0)]
    cur = [{"ttft_ms.p50": x} for x in (13.0, 13.1, 12.9)]
    (v,) = compare_summaries(base, cur, ["ttft_ms.p50"])
    rec = v
    assert rec.verdict == "regression" and rec.change_pct == pytest.approx(v.change_pct)
    assert rec.n_baseline == 4 and rec.n_current == 3
    VerdictsFile(cases=[CaseVerdict(case_id="x", engine="vllm", model="m", scenario="s", hardware="cpu",
                                     status="regression", verdicts=[rec])]).dumps()


@pytest.mark.parametrize("content, needle", [
    ("{ nope", "not a readable verdicts file"),
    ('{"schema_version": 1, "cases": []}', "schema_version 1"),
    ('{"schema_version": 2, "cases": [{"case_id": "x"}]}', "cases.0.engine"),
    ('{"schema_version": 2, "cases": [{"case_id": "x", "engine": "vllm", "model": "m", "scenario": "s", '
     '"hardware": "cpu", "status": "exploded"}]}', "cases.0.status"),
    ("[]", "verdicts file schema_version 'list'"),
])
def test_bad_verdicts_file_is_an_error_naming_it(tmp_path, content, needle):
    p = tmp_path / "verdicts.json"
    p.write_text(content)
    with pytest.raises(VerdictsFileError) as exc:
        load_verdicts(p)
    assert str(p) in str(exc.value) and needle in str(exc.value)
    with pytest.raises(VerdictsFileError, match=re.escape(str(p))):
        gather([tmp_path], tmp_path)


def test_missing_verdicts_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(VerdictsFileError, match="not a readable verdicts file"):
        load_verdicts(tmp_path / "verdicts.json")


def test_a_missing_matplotlib_is_one_clear_error_not_a_chartless_report(tmp_path):
    """matplotlib is a core dependency: without it render_report raises one line that names it (here in a
    subprocess whose import of matplotlib fails), instead of an empty or partial report."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['matplotlib'] = None\n"  # `import matplotlib` now raises ImportError
            "from pathlib import Path\n"
            "from perfgate.report import render_report\n"
            f"render_report([Path({str(FIXTURE)!r})], Path({str(tmp_path)!r}))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: perfgate's report needs matplotlib, a dependency of perfgate"), run.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-rendered


def test_engine_versions_are_ordered_as_versions(tmp_path):
    """0.9.0 comes before 0.10.0 in the A/B table and the case list (as text it sorts after)."""
    d = tmp_path / "run" / "results"
    d.mkdir(parents=True)
    for src in (FIXTURE / "results").glob("vllm-*-tiny-llama-decode-heavy.trial*.result.json"):
        text = src.read_text().replace('"0.31.0"', '"0.9.0"').replace('"0.32.0"', '"0.10.0"')
        (d / src.name.replace("0.31.0", "0.9.0").replace("0.32.0", "0.10.0")).write_text(text)
    data = gather([d.parent], tmp_path / "out")
    (_, group), = data.ab_groups()
    assert [c.version for c in group] == ["0.9.0", "0.10.0"]


def test_version_key_orders_versions_then_other_strings():
    from perfgate._versions import version_key

    assert sorted(["unknown", "0.10.0", None, "0.9.1", "1.0.0rc1", "abc123"], key=version_key) == \
        ["0.9.1", "0.10.0", "1.0.0rc1", "abc123", "unknown", None]
