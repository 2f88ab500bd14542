"""Decimal rounding as Lago does it, and a context wide enough for exact billing arithmetic.

Python's default decimal context keeps 28 significant digits and rounds beyond that; Ruby's
BigDecimal, which Lago computes with, does not. Every sum and product of billing values runs in
:func:`exact`, whose precision is far above anything a price or a usage total needs.
"""

from __future__ import annotations

import decimal
from contextlib import AbstractContextManager
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from metering.models import BillableMetric, RoundingFunction

__all__ = [
    "apply_rounding",
    "ceil_at",
    "exact",
    "floor_at",
    "round_half_up",
    "round_metric_units",
]

# Enough digits for any product of two 50-digit decimals: sums and products stay exact.
_PRECISION = 100


def exact() -> AbstractContextManager[decimal.Context]:
    """A local decimal context in which billing sums and products are exact."""
    return decimal.localcontext(
        prec=_PRECISION,
        rounding=decimal.ROUND_HALF_EVEN,
        Emax=decimal.MAX_EMAX,
        Emin=decimal.MIN_EMIN,
    )


def _quantum(places: int) -> Decimal:
    # 10 ** -places as a Decimal exponent: places=2 -> 0.01, places=-1 -> 1E+1.
    return Decimal(1).scaleb(-places)


def _to_places(value: Decimal, places: int, rounding: str) -> Decimal:
    with exact():
        return value.quantize(_quantum(places), rounding=rounding)


def round_half_up(value: Decimal, places: int = 0) -> Decimal:
    """Round to ``places`` decimals, halves away from zero (Ruby's BigDecimal#round)."""
    return _to_places(value, places, ROUND_HALF_UP)


def ceil_at(value: Decimal, places: int = 0) -> Decimal:
    """Round up (towards +infinity) to ``places`` decimals: ``ceil_at(48.434, 2) == 48.44``."""
    return _to_places(value, places, ROUND_CEILING)


def floor_at(value: Decimal, places: int = 0) -> Decimal:
    """Round down (towards -infinity) to ``places`` decimals."""
    return _to_places(value, places, ROUND_FLOOR)


def apply_rounding(
    units: Decimal, function: RoundingFunction | None, precision: int | None
) -> Decimal:
    """A metric's optional rounding of aggregated units (precision defaults to 0)."""
    if function is None:
        return units
    places = precision or 0
    if function is RoundingFunction.CEIL:
        return ceil_at(units, places)
    if function is RoundingFunction.FLOOR:
        return floor_at(units, places)
    return round_half_up(units, places)


def round_metric_units(metric: BillableMetric, units: Decimal) -> Decimal:
    """``units`` rounded the way ``metric`` asks, before any charge model sees them."""
    return apply_rounding(units, metric.rounding_function, metric.rounding_precision)
