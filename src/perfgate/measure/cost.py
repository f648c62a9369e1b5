"""Cost figures from an hourly instance price (the users' studies A and B).

cost per 1M output tokens = price_per_hour / (output tokens/s × 3600) × 10^6
cost per 1k requests      = price_per_hour / (requests/s × 3600) × 10^3

Both assume the instance is kept busy at the measured rate; idle cost is the
full hourly price whatever the load.
"""

from __future__ import annotations


def cost_metrics(hourly_price_usd: float | None, metrics: dict[str, float | None]) -> dict[str, float]:
    if not hourly_price_usd:
        return {}
    out: dict[str, float] = {}
    tps = metrics.get("output_throughput")
    rps = metrics.get("request_throughput")
    if tps:
        out["cost_per_1m_output_tokens_usd"] = hourly_price_usd / (tps * 3600.0) * 1e6
    if rps:
        out["cost_per_1k_requests_usd"] = hourly_price_usd / (rps * 3600.0) * 1e3
    return out
