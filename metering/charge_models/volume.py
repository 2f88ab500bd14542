"""The volume charge model: the tier holding the total volume prices every unit."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import msgspec

from metering.charge_models.graduated import PriceRange, read_price_ranges
from metering.rounding import exact

__all__ = ["VolumeProperties", "volume_amount", "volume_range"]


class VolumeProperties(msgspec.Struct, frozen=True, kw_only=True):
    """``volume_ranges`` (same shape as the graduated tiers)."""

    ranges: tuple[PriceRange, ...]

    @classmethod
    def read(cls, properties: Mapping[str, Any]) -> VolumeProperties:
        """The typed properties of a stored charge (or filter)."""
        return cls(ranges=read_price_ranges(properties.get("volume_ranges")))


def volume_range(units: Decimal, properties: VolumeProperties) -> PriceRange | None:
    """The first tier (by ``from_value``) with ``from ≤ ceil(units)`` and ``units ≤ to``.

    The ceiling places fractional units between two integer tiers in the upper one: 100.5
    units with tiers 0-100 / 101-200 fall in the second.
    """
    ceiling = math.ceil(units)
    for tier in sorted(properties.ranges, key=lambda t: t.from_value):
        if tier.from_value <= ceiling and (tier.to_value is None or units <= tier.to_value):
            return tier
    return None


def volume_amount(units: Decimal, properties: VolumeProperties) -> Decimal:
    """``units × per_unit_amount + flat_amount`` of the matching tier (0 units: the first flat).

    Units that no tier holds (negative units, or a gap in the tiers) price at 0, where Lago
    would fail the request.
    """
    tier = volume_range(units, properties)
    if tier is None:
        return Decimal(0)
    with exact():
        return units * tier.per_unit_amount + tier.flat_amount
