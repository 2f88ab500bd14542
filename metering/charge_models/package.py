"""The package charge model: a price per started package of units, after free units."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import msgspec

from metering.charge_models.common import read_decimal, read_int
from metering.rounding import exact

__all__ = ["PackageProperties", "package_amount"]


class PackageProperties(msgspec.Struct, frozen=True, kw_only=True):
    """``amount`` per package of ``package_size`` units; the first ``free_units`` are free."""

    amount: Decimal
    package_size: int
    free_units: int = 0

    @classmethod
    def read(cls, properties: Mapping[str, Any]) -> PackageProperties:
        """The typed properties of a stored charge (or filter)."""
        return cls(
            amount=read_decimal(properties.get("amount")),
            package_size=read_int(properties.get("package_size")),
            free_units=read_int(properties.get("free_units")),
        )


def package_amount(units: Decimal, properties: PackageProperties) -> Decimal:
    """``ceil((units − free_units) / package_size) × amount``; 0 while within the free units.

    A started package is charged in full: 121 units, size 10, 10 free -> 12 packages.
    """
    with exact():
        paid = units - properties.free_units
        if paid < 0 or properties.package_size <= 0:
            return Decimal(0)
        # divmod is exact where a division could round: the ceiling needs the remainder only.
        packages, remainder = divmod(paid, properties.package_size)
        if remainder:
            packages += 1
        return packages * properties.amount
