from perfgate.measure.cost import cost_metrics


def test_study_b_formula():
    # $1.006/h at 400 tok/s: 1.006 / (400 * 3600) * 1e6 = 0.6986 $ per 1M tokens
    m = cost_metrics(1.006, {"output_throughput": 400.0, "request_throughput": 2.0})
    assert round(m["cost_per_1m_output_tokens_usd"], 4) == 0.6986
    assert round(m["cost_per_1k_requests_usd"], 4) == round(1.006 / 7200 * 1000, 4)


def test_no_price_no_cost():
    assert cost_metrics(None, {"output_throughput": 1.0}) == {}
    assert cost_metrics(2.0, {"output_throughput": 0.0}) == {}
