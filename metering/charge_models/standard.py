"""The standard charge model: one price per unit."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import msgspec

from metering.charge_models.common import read_decimal
from metering.rounding import exact

__all__ = ["StandardProperties", "standard_amount"]


class StandardProperties(msgspec.Struct, frozen=True, kw_only=True):
    """``amount``: the price of one unit."""

    amount: Decimal

    @classmethod
    def read(cls, properties: Mapping[str, Any]) -> StandardProperties:
        """The typed properties of a stored charge (or filter)."""
        return cls(amount=read_decimal(properties.get("amount")))


def standard_amount(units: Decimal, properties: StandardProperties) -> Decimal:
    """``units × amount``."""
    with exact():
        return units * properties.amount
