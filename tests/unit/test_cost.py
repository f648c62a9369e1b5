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
