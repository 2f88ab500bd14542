"""The percentage charge model: a rate on the total plus a fixed fee per event, with free units."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import msgspec

from metering.aggregation import RunningTotal
from metering.charge_models.common import read_decimal, read_int, read_optional_decimal
from metering.rounding import exact

__all__ = ["PercentageProperties", "per_event_amount", "percentage_amount"]

_ZERO = Decimal(0)


class PercentageProperties(msgspec.Struct, frozen=True, kw_only=True):
    """``rate`` in percent (``"1.3"`` is 1.3 %), ``fixed_amount`` per event, free units.

    ``free_units_per_events`` (fpe) frees the first events, ``free_units_per_total_aggregation``
    (fpt) the first amount. The per-transaction bounds only apply with a premium licence.
    """

    rate: Decimal
    fixed_amount: Decimal = _ZERO
    free_units_per_events: int = 0
    free_units_per_total_aggregation: Decimal = _ZERO
    per_transaction_min_amount: Decimal | None = None
    per_transaction_max_amount: Decimal | None = None

    @classmethod
    def read(cls, properties: Mapping[str, Any]) -> PercentageProperties:
        """The typed properties of a stored charge (or filter)."""
        return cls(
            rate=read_decimal(properties.get("rate")),
            fixed_amount=read_decimal(properties.get("fixed_amount")),
            free_units_per_events=read_int(properties.get("free_units_per_events")),
            free_units_per_total_aggregation=read_decimal(
                properties.get("free_units_per_total_aggregation")
            ),
            per_transaction_min_amount=read_optional_decimal(
                properties.get("per_transaction_min_amount")
            ),
            per_transaction_max_amount=read_optional_decimal(
                properties.get("per_transaction_max_amount")
            ),
        )

    @property
    def has_free_units(self) -> bool:
        """Whether running totals are needed (any free option is set)."""
        return self.free_units_per_events > 0 or self.free_units_per_total_aggregation > 0

    def priced_per_event(self, premium: bool) -> bool:
        """Whether the amount is computed event by event (premium, with a min or a max)."""
        bounded = (
            self.per_transaction_min_amount is not None
            or self.per_transaction_max_amount is not None
        )
        return premium and bounded


def _free_amount(props: PercentageProperties, running_total: RunningTotal) -> Decimal:
    last = running_total.last()
    if last == 0:
        return _ZERO
    fpe = props.free_units_per_events
    if 0 < fpe < len(running_total):
        return running_total.at(fpe - 1)
    fpt = props.free_units_per_total_aggregation
    if fpt == 0 or last <= fpt:
        return last
    return fpt


def _free_events(props: PercentageProperties, running_total: RunningTotal) -> int:
    below = running_total.count_below(props.free_units_per_total_aggregation)
    candidates = [n for n in (props.free_units_per_events, below) if n != 0]
    return min(candidates) if candidates else 0


def percentage_amount(
    units: Decimal,
    props: PercentageProperties,
    *,
    events_count: int,
    running_total: RunningTotal,
) -> Decimal:
    """``(units − free amount) × rate / 100 + (events − free events) × fixed_amount``.

    Spec example: events 50, 100, 250, 400, rate 1.3, fixed 2, fpe 3, fpt 250 -> 11.15.
    """
    with exact():
        free_amount = _free_amount(props, running_total)
        rated = _ZERO if free_amount > units else (units - free_amount) * props.rate / 100
        free_events = _free_events(props, running_total)
        if units == 0 or free_events >= events_count:
            fixed = _ZERO
        else:
            fixed = (events_count - free_events) * props.fixed_amount
        return rated + fixed


def per_event_amount(values: Iterable[Decimal], props: PercentageProperties) -> Decimal:
    """The premium variant: each event priced alone and clamped to the per-transaction bounds.

    Free events and the free amount are consumed first, in timestamp order. Spec example:
    [10, 80, 10000] at 2.99 % with min 1.75 and max 12 -> 1.75 + 2.392 + 12 = 16.142.
    """
    free_events = props.free_units_per_events
    free_amount = props.free_units_per_total_aggregation
    low, high = props.per_transaction_min_amount, props.per_transaction_max_amount
    total = _ZERO
    with exact():
        for event_value in values:
            value = event_value
            if free_events > 0 or free_amount > 0:
                free_events -= 1
                if free_amount <= 0:
                    continue
                if free_amount > value:
                    free_amount -= value
                    continue
                value -= free_amount
                free_amount = _ZERO
                free_events = 0
            amount = value * props.rate / 100 + props.fixed_amount
            if low is not None and amount < low:
                amount = low
            elif high is not None and amount > high:
                amount = high
            total += amount
    return total
