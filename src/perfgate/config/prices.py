"""The prices file: an hourly price per hardware class (GPU model x count), for cost per token (measure.cost).

::

    prices:
      - {accelerator: NVIDIA H100 80GB HBM3, count: 1, usd_per_hour: 3.0, source: "example; set yours"}

``accelerator`` is the GPU's name as NVML reports it (what a result records as
``environment.hardware.accelerator``; ``cpu`` for a CPU machine), ``count`` the GPUs the engine used.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from perfgate.config.yamlfile import Frozen, load_yaml, validate


class HourlyPrice(Frozen):
    accelerator: str
    count: int = Field(default=1, ge=0)
    usd_per_hour: float = Field(gt=0)
    source: str | None = None  # where the figure comes from (a price list, a contract, "example")


class PricesFile(Frozen):
    prices: tuple[HourlyPrice, ...] = ()

    def lookup(self, accelerator: str, count: int) -> HourlyPrice | None:
        """The price of this hardware class (the GPU name compared case-insensitively), or None."""
        return next((p for p in self.prices if p.accelerator.casefold() == accelerator.casefold()
                     and p.count == count), None)


def load_prices(path: Path) -> PricesFile:
    """``path`` validated (a :class:`perfgate.config.yamlfile.MatrixError` naming it otherwise)."""
    return validate(PricesFile, load_yaml(path) or {}, path)
