"""The six charge models: one small module each, and :func:`charge_amount` to dispatch.

Each model turns a bucket's (rounded) units into an unrounded Decimal amount with the exact
math of reference/lago-semantics.md section 3. The premium licence switch (percentage
per-transaction bounds; graduated_percentage) is an explicit parameter, never a global.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from metering.aggregation import Aggregation
from metering.charge_models.graduated import GraduatedProperties, graduated_amount
from metering.charge_models.graduated_percentage import (
    GraduatedPercentageProperties,
    graduated_percentage_amount,
)
from metering.charge_models.package import PackageProperties, package_amount
from metering.charge_models.percentage import (
    PercentageProperties,
    per_event_amount,
    percentage_amount,
)
from metering.charge_models.standard import StandardProperties, standard_amount
from metering.charge_models.volume import VolumeProperties, volume_amount
from metering.models import ChargeModel

__all__ = ["charge_amount"]


def _percentage(
    units: Decimal, props: Mapping[str, Any], aggregation: Aggregation, premium: bool
) -> Decimal:
    typed = PercentageProperties.read(props)
    values = aggregation.event_values
    if typed.priced_per_event(premium) and values is not None:
        return per_event_amount(values, typed)
    # Without per-event values (weighted_sum has none in Lago either) the plain formula holds.
    return percentage_amount(
        units,
        typed,
        events_count=aggregation.events_count,
        running_total=aggregation.running_total,
    )


def charge_amount(
    model: ChargeModel,
    properties: Mapping[str, Any],
    units: Decimal,
    aggregation: Aggregation,
    *,
    premium: bool = False,
) -> Decimal:
    """The amount of one bucket: ``model`` priced with ``properties`` on ``units``.

    ``units`` are the bucket's units after metric rounding; ``aggregation`` supplies what the
    percentage model needs beyond them (events_count, running totals, per-event values).
    """
    if model is ChargeModel.STANDARD:
        return standard_amount(units, StandardProperties.read(properties))
    if model is ChargeModel.PACKAGE:
        return package_amount(units, PackageProperties.read(properties))
    if model is ChargeModel.GRADUATED:
        return graduated_amount(units, GraduatedProperties.read(properties))
    if model is ChargeModel.VOLUME:
        return volume_amount(units, VolumeProperties.read(properties))
    if model is ChargeModel.PERCENTAGE:
        return _percentage(units, properties, aggregation, premium)
    return graduated_percentage_amount(units, GraduatedPercentageProperties.read(properties))
