"""Cost figures from an hourly price of the hardware that ran the trial (docs/metrics.md, "Cost").

cost per 1M output tokens = price_per_hour / (output tokens/s × 3600) × 10^6
cost per 1k requests      = price_per_hour / (requests/s × 3600) × 10^3

Both assume the instance is kept busy at the measured rate; idle cost is the
full hourly price whatever the load.

Which price (:func:`choose_price`): by default the price of the hardware class
that ran the trial (GPU model × count) from the prices file - ``PERFGATE_PRICES``,
else ``fixtures/prices.yaml`` under the working directory; a hardware class the
file does not price gets no cost figures (never another GPU's price). A
scenario with ``price: study`` uses its own ``hourly_price_usd`` - the study's
instance price, for reproducing the study's table - whatever ran it. The
result's summary records the price and where it came from.
"""

from __future__ import annotations

import os
from pathlib import Path

from perfgate.config.prices import PricesFile, load_prices

DEFAULT_PRICES = Path("fixtures") / "prices.yaml"


def prices_path() -> Path:
    return Path(os.environ.get("PERFGATE_PRICES") or DEFAULT_PRICES)


def choose_price(basis: str, study_price: float | None, accelerator: str, gpu_count: int,
                 prices: PricesFile | None = None) -> tuple[float | None, str]:
    """The hourly price to cost a trial with, and one line saying which it is."""
    hw = f"{accelerator} x{gpu_count}" if accelerator != "cpu" else "cpu"
    if basis == "study":
        if study_price is None:
            return None, "price: study, but the scenario sets no hourly_price_usd: no cost figures"
        return study_price, f"the study's price ${study_price:g}/h (scenario's hourly_price_usd, reproducing the " \
                            f"study; ran on {hw})"
    path = prices_path()
    if prices is None:
        if not path.is_file():
            return None, f"no prices file ({path}): no cost figures"
        prices = load_prices(path)
    hit = prices.lookup(accelerator, gpu_count)
    if hit is None:
        return None, f"no price for hardware class {hw} in {path}: no cost figures"
    return hit.usd_per_hour, f"hardware class {hw}: ${hit.usd_per_hour:g}/h ({path}" + \
        (f"; {hit.source})" if hit.source else ")")


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
