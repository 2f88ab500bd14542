"""The graduated charge model: each tier prices the units that fall in it, plus its flat fee."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from metering.charge_models.common import read_decimal, read_optional_decimal
from metering.rounding import exact

__all__ = ["GraduatedProperties", "PriceRange", "graduated_amount", "read_price_ranges"]


class PriceRange(msgspec.Struct, frozen=True, kw_only=True):
    """One tier: ``[from_value, to_value]`` (``None``: unbounded), its unit price and flat fee."""

    from_value: Decimal
    to_value: Decimal | None
    per_unit_amount: Decimal
    flat_amount: Decimal


def read_price_ranges(raw: Any) -> tuple[PriceRange, ...]:
    """Tiers from stored properties (``graduated_ranges`` / ``volume_ranges``), in given order."""
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        return ()
    return tuple(
        PriceRange(
            from_value=read_decimal(item.get("from_value")),
            to_value=read_optional_decimal(item.get("to_value")),
            per_unit_amount=read_decimal(item.get("per_unit_amount")),
            flat_amount=read_decimal(item.get("flat_amount")),
        )
        for item in raw
        if isinstance(item, Mapping)
    )


class GraduatedProperties(msgspec.Struct, frozen=True, kw_only=True):
    """``graduated_ranges``, ordered."""

    ranges: tuple[PriceRange, ...]

    @classmethod
    def read(cls, properties: Mapping[str, Any]) -> GraduatedProperties:
        """The typed properties of a stored charge (or filter)."""
        return cls(ranges=read_price_ranges(properties.get("graduated_ranges")))


def _adjacent(ranges: Sequence[PriceRange]) -> bool:
    # "Adjacent" tiers (0-0.1, 0.1-1, 1-∞) start exactly where the previous one stops.
    if len(ranges) < 2:
        return False
    return all(
        current.from_value == (previous.to_value or 0)
        for previous, current in itertools.pairwise(ranges)
    )


def _range_units(tier: PriceRange, units: Decimal, adjacent: bool) -> Decimal:
    effective = units
    if tier.to_value is not None and units >= tier.to_value:
        effective = tier.to_value
    if tier.from_value == 0:
        return effective
    # Integer tiers (0-10, 11-20) count both ends; adjacent tiers share their bound.
    difference = effective - tier.from_value
    return difference if adjacent else difference + 1


def graduated_amount(units: Decimal, properties: GraduatedProperties) -> Decimal:
    """Σ over the tiers entered of ``range_units × per_unit_amount + flat_amount``.

    Tiers are walked in order up to the first whose ``to_value`` is unbounded or reaches the
    units, so the first tier's flat fee is due even at 0 units. Example with 0-10 @10 +2,
    11-20 @5 +3, 21-∞ @5 +3: 11 units -> 110, 21 units -> 163.
    """
    ranges = properties.ranges
    adjacent = _adjacent(ranges)
    total = Decimal(0)
    with exact():
        for tier in ranges:
            total += _range_units(tier, units, adjacent) * tier.per_unit_amount + tier.flat_amount
            if tier.to_value is None or tier.to_value >= units:
                break
    return total
