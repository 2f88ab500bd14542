"""The graduated percentage charge model (premium): a rate and a flat fee per tier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from metering.charge_models.common import read_decimal, read_optional_decimal
from metering.rounding import exact

__all__ = ["GraduatedPercentageProperties", "RateRange", "graduated_percentage_amount"]


class RateRange(msgspec.Struct, frozen=True, kw_only=True):
    """One tier: ``[from_value, to_value]`` (``None``: unbounded), a percentage and a flat fee."""

    from_value: Decimal
    to_value: Decimal | None
    rate: Decimal
    flat_amount: Decimal


class GraduatedPercentageProperties(msgspec.Struct, frozen=True, kw_only=True):
    """``graduated_percentage_ranges``, ordered."""

    ranges: tuple[RateRange, ...]

    @classmethod
    def read(cls, properties: Mapping[str, Any]) -> GraduatedPercentageProperties:
        """The typed properties of a stored charge (or filter)."""
        raw = properties.get("graduated_percentage_ranges")
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            return cls(ranges=())
        return cls(
            ranges=tuple(
                RateRange(
                    from_value=read_decimal(item.get("from_value")),
                    to_value=read_optional_decimal(item.get("to_value")),
                    rate=read_decimal(item.get("rate")),
                    flat_amount=read_decimal(item.get("flat_amount")),
                )
                for item in raw
                if isinstance(item, Mapping)
            )
        )


def _range_units(tier: RateRange, units: Decimal) -> Decimal:
    if tier.to_value is not None and units >= tier.to_value:
        # A full tier: 0-10 holds 10 units, 11-20 holds 10 units.
        return tier.to_value - (1 if tier.from_value == 0 else tier.from_value) + 1
    if tier.from_value == 0:
        return units
    return units - tier.from_value + 1


def graduated_percentage_amount(
    units: Decimal, properties: GraduatedPercentageProperties
) -> Decimal:
    """Σ over the tiers entered of ``range_units × rate / 100 + flat_amount``.

    Same walk as graduated (the first flat fee is due at 0 units); there is no adjacent
    variant. Example 0-10 1% +200, 11-20 2% +300, 21-∞ 3% +400: 21 units -> 900.33.
    """
    total = Decimal(0)
    with exact():
        for tier in properties.ranges:
            total += _range_units(tier, units) * tier.rate / 100 + tier.flat_amount
            if tier.to_value is None or tier.to_value >= units:
                break
    return total
