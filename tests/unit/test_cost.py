"""Cost per unit of work from an hourly price, against values worked out by hand (not the formula again)."""

import pytest

from perfgate.measure.cost import cost_metrics


def test_study_b_prices():
    # Study B: $1.006/h at 400 output tok/s and 2 req/s.
    # 400 tok/s = 1,440,000 tok/h, so 1M tokens take 1/1.44 h: $1.006 / 1.44 = $0.698611...
    # 2 req/s = 7,200 req/h, so 1k requests take 1/7.2 h: $1.006 / 7.2 = $0.139722...
    m = cost_metrics(1.006, {"output_throughput": 400.0, "request_throughput": 2.0})
    assert m == pytest.approx({"cost_per_1m_output_tokens_usd": 0.6986111, "cost_per_1k_requests_usd": 0.1397222},
                              abs=1e-7)


def test_round_numbers():
    # $3.60/h is $0.001 a second: 1000 tok/s makes 1M tokens in 1000 s ($1.00), 1 req/s 1k requests in 1000 s ($1.00);
    # ten times the throughput is a tenth of the cost.
    assert cost_metrics(3.6, {"output_throughput": 1000.0, "request_throughput": 1.0}) == pytest.approx(
        {"cost_per_1m_output_tokens_usd": 1.0, "cost_per_1k_requests_usd": 1.0}, rel=1e-12)
    assert cost_metrics(3.6, {"output_throughput": 10000.0, "request_throughput": 10.0}) == pytest.approx(
        {"cost_per_1m_output_tokens_usd": 0.1, "cost_per_1k_requests_usd": 0.1}, rel=1e-12)


def test_each_figure_needs_its_own_throughput():
    assert cost_metrics(3.6, {"output_throughput": 1000.0}) == pytest.approx({"cost_per_1m_output_tokens_usd": 1.0})
    assert cost_metrics(3.6, {"request_throughput": 1.0, "output_throughput": None}) == pytest.approx(
        {"cost_per_1k_requests_usd": 1.0})


def test_no_price_no_cost():
    assert cost_metrics(None, {"output_throughput": 1.0}) == {}
    assert cost_metrics(2.0, {"output_throughput": 0.0}) == {}


PRICES = """prices:
  - {accelerator: NVIDIA A10G, count: 1, usd_per_hour: 1.006, source: g5.xlarge}
  - {accelerator: NVIDIA H100 80GB HBM3, count: 1, usd_per_hour: 3.0}
  - {accelerator: NVIDIA H100 80GB HBM3, count: 2, usd_per_hour: 6.0}
"""


@pytest.fixture
def prices(tmp_path, monkeypatch):
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES)
    monkeypatch.setenv("PERFGATE_PRICES", str(path))
    return path


def test_the_price_is_the_hardware_class_that_ran_not_the_studys(prices):
    from perfgate.measure.cost import choose_price

    # Study B's scenario carries the A10G's $1.006/h; run on one H100 it is priced as one H100
    assert choose_price("hardware", 1.006, "NVIDIA H100 80GB HBM3", 1) == (
        3.0, f"hardware class NVIDIA H100 80GB HBM3 x1: $3/h ({prices})")
    assert choose_price("hardware", 1.006, "NVIDIA H100 80GB HBM3", 2)[0] == 6.0  # GPU model x count
    assert choose_price("hardware", 1.006, "nvidia a10g", 1) == (1.006, f"hardware class nvidia a10g x1: "
                                                                         f"$1.006/h ({prices}; g5.xlarge)")
    price, line = choose_price("hardware", 1.006, "NVIDIA L4", 1)  # not priced: no figure, never another GPU's
    assert price is None and line == f"no price for hardware class NVIDIA L4 x1 in {prices}: no cost figures"
    price, line = choose_price("study", 1.006, "NVIDIA H100 80GB HBM3", 1)  # reproducing the study, labelled
    assert price == 1.006 and "the study's price $1.006/h" in line and "ran on NVIDIA H100 80GB HBM3 x1" in line
    assert choose_price("study", None, "cpu", 0)[0] is None


def test_no_prices_file_no_cost_and_the_shipped_file_prices_the_studies_gpus(tmp_path, monkeypatch):
    from pathlib import Path

    from perfgate.config.prices import load_prices
    from perfgate.config.yamlfile import MatrixError
    from perfgate.measure.cost import choose_price

    monkeypatch.setenv("PERFGATE_PRICES", str(tmp_path / "none.yaml"))
    assert choose_price("hardware", 1.006, "NVIDIA A10G", 1)[0] is None
    shipped = load_prices(Path(__file__).resolve().parents[2] / "fixtures" / "prices.yaml")
    assert shipped.lookup("NVIDIA A10G", 1).usd_per_hour == 1.006  # what studies B and C quote
    assert shipped.lookup("NVIDIA GeForce RTX 3060", 1).usd_per_hour == 0.31  # what study A quotes
    bad = tmp_path / "bad.yaml"
    bad.write_text("prices: [{accelerator: X, usd_per_hour: 0}]\n")
    with pytest.raises(MatrixError, match="bad.yaml"):
        load_prices(bad)


@pytest.mark.parametrize("basis, price", [("hardware", 3.0), ("study", 1.006)])
def test_a_trial_records_the_price_it_used(tmp_path, prices, basis, price):
    import sys
    from pathlib import Path

    from perfgate.config.engines import EngineConfig
    from perfgate.config.scenario import ScenarioFile, expand_sweep
    from perfgate.engines.base import ModelRef
    from perfgate.engines.registry import get_adapter
    from perfgate.engines.server import EngineServer
    from perfgate.measure.trial import Target, run_trial
    from perfgate.schema.result import EngineInfo, Hardware

    cfg = EngineConfig(id="sim", kind="sim", boot_timeout_s=30, flags=("--ttft-base-ms", "5", "--itl-ms", "2"))
    server = EngineServer(get_adapter("sim"), cfg, ModelRef("sim", "sim"), Path(sys.executable),
                          tmp_path / "sim.log").start()
    try:
        target = Target(server.base_url, ModelRef("sim", "sim"), EngineInfo(name="sim", version=server.version), server)
        spec = ScenarioFile(name="b", num_requests=4, prompt_tokens=8, max_tokens=4, concurrency=2, warmup_requests=0,
                            seed=1, hourly_price_usd=1.006, price=basis)
        r = run_trial(target, expand_sweep(spec, tmp_path)[0], trial=0, test_id="b", results_dir=tmp_path,
                      hardware=Hardware(accelerator="NVIDIA H100 80GB HBM3", gpu_count=1))
    finally:
        server.stop()
    s = r.summary
    assert s.hourly_price_usd == price and ("hardware class" if basis == "hardware" else "study") in s.price_source
    assert s.metrics["cost_per_1m_output_tokens_usd"] == pytest.approx(
        price / (s.metrics["output_throughput"] * 3600) * 1e6)


def test_the_report_says_which_price_was_used(tmp_path):
    import json
    import shutil
    from pathlib import Path

    from perfgate.report import render_report

    d = tmp_path / "run"
    shutil.copytree(Path(__file__).resolve().parents[2] / "fixtures" / "report" / "run", d)
    line = "hardware class NVIDIA H100 80GB HBM3 x1: $3/h (fixtures/prices.yaml; example, not a quote: set yours)"
    for p in (d / "results").glob("*.result.json"):
        doc = json.loads(p.read_text())
        if doc["summary"]:  # a failed trial has none
            doc["summary"].update(hourly_price_usd=3.0, price_source=line)
        p.write_text(json.dumps(doc))
    html = render_report([d], tmp_path / "out")[0].read_text()
    assert f'<td data-testid="price">{line}</td>' in html
