"""The report in a real browser: Debian's Chromium, headless, offline flags.

Renders the committed fixture results, loads the page from a file, checks the
DOM Chromium built, checks Chromium's own network log for any request other
than the page itself, and saves a screenshot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from perfgate.report import render_report

from .cdp import Chrome

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "report" / "run"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--hide-scrollbars"]

if CHROMIUM is None:
    if os.environ.get("CI"):
        pytest.fail("chromium is required in CI (make test installs Debian's chromium)", pytrace=False)
    pytest.skip("chromium not installed (make test installs it)", allow_module_level=True)


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    html_path, _ = render_report([FIXTURE], out)
    return out, html_path


def test_dom_shows_each_outcome(page):
    out, html_path = page
    dom = _chromium(out, "--dump-dom", html_path.as_uri()).stdout
    assert "<h1>perfgate report</h1>" in dom
    assert 'data-case="vllm-0.32.0-tiny-llama-decode-heavy" data-status="regression"' in dom
    assert 'data-metric="output_throughput" data-verdict="improvement"' in dom
    assert 'data-verdict="inconclusive"' in dom
    assert 'data-case="vllm-0.32.0-tiny-llama-crashes" data-status="failed"' in dom
    assert "FAILED" in dom and "CLIENT-BOUND" not in dom
    # The headline counts as the browser rendered them.
    assert 'data-testid="count-regressions"><b>1</b>' in dom
    assert 'data-testid="count-failed"><b>1</b>' in dom
    # Charts are inline SVG the browser parsed.
    assert dom.count("<svg") >= 4


def test_no_network_request_and_screenshot(page, tmp_path):
    out, html_path = page
    chrome = Chrome(CHROMIUM, FLAGS, tmp_path / "profile")
    try:
        _, requests, dom, png = chrome.open_page(html_path.as_uri())
    finally:
        chrome.close()
    # The page's own requests, from its tab's Network domain: only the document itself.
    assert requests == [html_path.as_uri()], requests
    assert 'data-status="regression"' in dom
    shot = out / "report.png"
    shot.write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    keep = ROOT / "reports" / "screenshots"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "report.png")
