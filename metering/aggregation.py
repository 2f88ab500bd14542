"""Units and events_count of one bucket, per aggregation type (lago-semantics.md section 1).

``count_agg``, ``sum_agg`` and ``max_agg`` fold the store's :class:`GroupAggregate` rows of the
bucket. ``latest_agg``, ``unique_count_agg`` and ``weighted_sum_agg`` need each event, in
timestamp order, and so do the percentage model's running totals over ``sum_agg`` values: those
read raw :class:`Event` lists. Nothing here rounds: metric rounding happens afterwards
(:mod:`metering.rounding`), on units only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import msgspec

from metering.models import Event
from metering.ports import GroupAggregate
from metering.rounding import exact
from metering.values import numeric_value, property_text

__all__ = [
    "Aggregation",
    "RunningTotal",
    "count_from_events",
    "count_from_groups",
    "count_running_total",
    "event_order",
    "latest_from_events",
    "max_event_values",
    "max_from_events",
    "max_from_groups",
    "numeric_values",
    "ones",
    "sum_from_events",
    "sum_from_groups",
    "sum_running_total",
    "unique_count_from_events",
    "weighted_sum_from_events",
]

_ZERO = Decimal(0)
_ONE = Decimal(1)
_SECONDS_PER_DAY = 86_400


class RunningTotal(msgspec.Struct, frozen=True, kw_only=True):
    """Lago's ``running_total`` for the percentage model's free units.

    Either explicit cumulative sums (``sum_agg``), or the steps ``1, 2, …, steps`` that count
    based aggregations use, kept symbolic so a million events cost nothing.
    """

    values: tuple[Decimal, ...] = ()
    steps: int = 0

    def __len__(self) -> int:
        return self.steps or len(self.values)

    def at(self, index: int) -> Decimal:
        """The ``index``-th (0-based) cumulative total."""
        return Decimal(index + 1) if self.steps else self.values[index]

    def last(self) -> Decimal:
        """The final total, 0 when empty."""
        if not len(self):
            return _ZERO
        return self.at(len(self) - 1)

    def count_below(self, limit: Decimal) -> int:
        """How many totals are strictly below ``limit``."""
        if self.steps:
            # Totals 1..steps below limit: those k with k < limit.
            return max(0, min(self.steps, math.ceil(limit) - 1))
        return sum(1 for value in self.values if value < limit)


class Aggregation(msgspec.Struct, frozen=True, kw_only=True):
    """One bucket's aggregation result, before metric rounding.

    ``total_aggregated_units`` differs from ``units`` only for ``weighted_sum_agg`` (the level at
    the end of the period). ``event_values`` are the per-event values the premium percentage
    model prices one by one; ``None`` when they were not requested.
    """

    units: Decimal
    events_count: int
    total_aggregated_units: Decimal | None = None
    running_total: RunningTotal = msgspec.field(default_factory=RunningTotal)
    event_values: tuple[Decimal, ...] | None = None


def event_order(event: Event) -> tuple[datetime, datetime, str]:
    """Sort key of events: timestamp, then ingestion (created_at, id)."""
    return (event.timestamp, event.created_at, event.id)


# -- grouped (store) aggregations -----------------------------------------------------------


def count_from_groups(rows: Iterable[GroupAggregate]) -> Aggregation:
    """``count_agg``: every event counts, properties ignored."""
    events = sum(row.events for row in rows)
    return Aggregation(units=Decimal(events), events_count=events)


def sum_from_groups(rows: Iterable[GroupAggregate]) -> Aggregation:
    """``sum_agg``: sum of the numeric field values; events_count counts only those."""
    total = _ZERO
    count = 0
    with exact():
        for row in rows:
            total += row.total
            count += row.numeric_events
    return Aggregation(units=total, events_count=count)


def max_from_groups(rows: Iterable[GroupAggregate]) -> Aggregation:
    """``max_agg``: the greatest numeric value (0 when none); a negative max stays negative.

    The fee later turns negative units into a 0-unit fee (Lago's ``init_fee``).
    """
    groups = list(rows)
    maxima = [row.maximum for row in groups if row.maximum is not None and row.numeric_events]
    count = sum(row.numeric_events for row in groups)
    return Aggregation(units=max(maxima) if maxima else _ZERO, events_count=count)


# -- per-event aggregations -----------------------------------------------------------------


def numeric_values(events: Iterable[Event], field_name: str | None) -> list[Decimal]:
    """The field values Lago aggregates, in the events' order (others are skipped)."""
    if field_name is None:
        return []
    values = []
    for event in events:
        value = numeric_value(event.properties.get(field_name))
        if value is not None:
            values.append(value)
    return values


def count_from_events(events: Sequence[Event]) -> Aggregation:
    """``count_agg`` over raw events."""
    return Aggregation(units=Decimal(len(events)), events_count=len(events))


def sum_from_events(events: Sequence[Event], field_name: str | None) -> Aggregation:
    """``sum_agg`` over raw events."""
    values = numeric_values(events, field_name)
    with exact():
        total = sum(values, _ZERO)
    return Aggregation(units=total, events_count=len(values))


def max_from_events(events: Sequence[Event], field_name: str | None) -> Aggregation:
    """``max_agg`` over raw events."""
    values = numeric_values(events, field_name)
    return Aggregation(units=max(values) if values else _ZERO, events_count=len(values))


def latest_from_events(events: Sequence[Event], field_name: str | None) -> Aggregation:
    """``latest_agg``: the value of the latest event (timestamp, then created), clamped at 0."""
    latest: tuple[tuple[datetime, datetime, str], Decimal] | None = None
    count = 0
    for event in events:
        value = numeric_value(event.properties.get(field_name)) if field_name else None
        if value is None:
            continue
        count += 1
        key = event_order(event)
        if latest is None or key > latest[0]:
            latest = (key, value)
    units = latest[1] if latest is not None else _ZERO
    return Aggregation(units=max(units, _ZERO), events_count=count)


def unique_count_from_events(events: Sequence[Event], field_name: str | None) -> Aggregation:
    """``unique_count_agg``: the add/remove state machine per distinct value.

    Per value, in timestamp order, an operation counts (+1 for ``add``, -1 otherwise) unless
    it repeats the previous operation of that value; a value starts as ``remove``. Events
    without the field share one ``None`` value. events_count equals the units, like Lago.
    """
    previous: dict[str | None, str] = {}
    units = 0
    for event in sorted(events, key=event_order):
        properties = event.properties
        value = property_text(properties.get(field_name)) if field_name else None
        operation = property_text(properties.get("operation_type")) or "add"
        if previous.get(value, "remove") != operation:
            units += 1 if operation == "add" else -1
        previous[value] = operation
    return Aggregation(units=Decimal(units), events_count=units)


def _ceil_second(moment: datetime) -> datetime:
    # Ruby's Time#ceil: 23:59:59.999999 becomes the next 00:00:00.
    if moment.microsecond:
        return moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def _floor_millisecond(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def _seconds(delta: timedelta) -> Decimal:
    return Decimal(delta // timedelta(microseconds=1)).scaleb(-6)


def weighted_sum_from_events(
    events: Sequence[Event],
    field_name: str | None,
    *,
    from_datetime: datetime,
    to_datetime: datetime,
    duration_days: int,
    recurring: bool = False,
) -> Aggregation:
    """``weighted_sum_agg``: the time-weighted level over the period, events carrying deltas.

    Rows are the period start (with the initial level), the period's events, and the period
    end (``to_datetime`` rounded up to the second). Each row weighs the running level by the
    seconds to the next row; the total is divided by the full period's seconds
    (``duration_days`` x 86400) and rounded up at 20 decimals. Recurring metrics start from the
    sum of every earlier delta; others from 0. events_count = rows - 2.
    """
    start = _floor_millisecond(from_datetime)
    end = _ceil_second(to_datetime)
    initial = _ZERO
    rows: list[tuple[datetime, Decimal]] = []
    with exact():
        for event in sorted(events, key=event_order):
            value = numeric_value(event.properties.get(field_name)) if field_name else None
            if value is None:
                continue
            if event.timestamp < start:
                if recurring:
                    initial += value
                continue
            if event.timestamp <= to_datetime:
                rows.append((event.timestamp, value))
        timeline = [(start, initial), *rows, (end, _ZERO)]
        level = _ZERO
        weighted = _ZERO
        for (moment, delta), (next_moment, _) in itertools.pairwise(timeline):
            level += delta
            weighted += level * _seconds(next_moment - moment)
        closing = initial + sum((delta for _, delta in rows), _ZERO)
    # One exact division, then Lago's ceil(20); Postgres divides row by row at ~16 digits.
    quotient = Fraction(weighted) / (duration_days * _SECONDS_PER_DAY)
    with exact():
        units = Decimal(math.ceil(quotient * 10**20)).scaleb(-20)
    return Aggregation(units=units, events_count=len(rows), total_aggregated_units=closing)


# -- the percentage model's inputs ----------------------------------------------------------


def sum_running_total(
    values: Sequence[Decimal], free_units_per_events: int, free_units_per_total: Decimal
) -> RunningTotal:
    """Cumulative sums: of the first ``fpe`` values, else up to the first one above ``fpt``."""
    if free_units_per_events <= 0 and free_units_per_total <= 0:
        return RunningTotal()
    totals: list[Decimal] = []
    total = _ZERO
    with exact():
        if free_units_per_events > 0:
            for value in values[:free_units_per_events]:
                total += value
                totals.append(total)
        else:
            for value in values:
                if free_units_per_total < total:
                    break
                total += value
                totals.append(total)
    return RunningTotal(values=tuple(totals))


def count_running_total(
    units: Decimal, free_units_per_events: int, free_units_per_total: Decimal
) -> RunningTotal:
    """``[1, 2, …, units]`` for count-based aggregations when any free option is set."""
    if free_units_per_events <= 0 and free_units_per_total <= 0:
        return RunningTotal()
    return RunningTotal(steps=max(0, math.floor(units)))


def max_event_values(values: Sequence[Decimal]) -> tuple[Decimal, ...]:
    """Per-event values of ``max_agg``: the first maximum as is, every other event as 0."""
    if not values:
        return ()
    top = max(values)
    index = values.index(top)
    return tuple(value if i == index else _ZERO for i, value in enumerate(values))


def ones(count: int) -> tuple[Decimal, ...]:
    """Per-event values of count-based aggregations: 1 per event."""
    return (_ONE,) * count
