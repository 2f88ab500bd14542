"""Current usage, assembled purely from a period, a plan and each charge's aggregates.

The service asks :func:`usage_queries` what each charge needs (grouped aggregates with which
``group_keys``, or raw events), runs those queries on the store, and hands the answers to
:func:`customer_usage`. Lago's rules (reference/lago-semantics.md sections 2-4):

- one fee per bucket (every charge filter, then the default bucket priced with the charge's
  own properties; a charge without filters has one fee and ``filters: []``), even at 0 units;
- a fee with negative units or a negative amount becomes 0 units and 0 amount;
- cents are rounded half-up per bucket, then summed per charge and over the charges;
- charges are sorted by metric name, case-insensitively.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal

import msgspec

from metering import aggregation as agg
from metering.charge_models import charge_amount
from metering.charge_models.percentage import PercentageProperties
from metering.errors import NotFound
from metering.filters import (
    Bucket,
    BucketId,
    BucketMatcher,
    BucketMatchers,
    FilterValues,
    compile_buckets,
)
from metering.formats import amount_to_cents
from metering.models import AggregationType, BillableMetric, Charge, ChargeModel, Event, Plan
from metering.periods import BillingPeriod
from metering.ports import AggregateQuery, GroupAggregate
from metering.rounding import exact, round_metric_units

__all__ = [
    "ChargeData",
    "ChargeQuery",
    "ChargeUsage",
    "CustomerUsage",
    "FilterUsage",
    "InputKind",
    "charge_query",
    "charge_usage",
    "customer_usage",
    "input_kind",
    "usage_queries",
]

_ZERO = Decimal(0)
_T = AggregationType
_PER_EVENT = (_T.LATEST, _T.UNIQUE_COUNT, _T.WEIGHTED_SUM)
_RECURRING_CAPABLE = (_T.SUM, _T.UNIQUE_COUNT, _T.WEIGHTED_SUM)


class InputKind(enum.Enum):
    """What a charge's aggregation reads from the store."""

    #: ``Store.aggregate``: sum / count / max per group of the filter keys' values.
    GROUPS = "groups"
    #: ``Store.list_events``: every event, in timestamp order.
    EVENTS = "events"


class ChargeQuery(msgspec.Struct, frozen=True, kw_only=True):
    """One charge's store query: run ``query`` with ``Store.aggregate`` or ``list_events``."""

    charge_id: str
    kind: InputKind
    query: AggregateQuery


class ChargeData(msgspec.Struct, frozen=True, kw_only=True):
    """A charge's store answer: ``groups`` for :attr:`InputKind.GROUPS`, else ``events``."""

    groups: Sequence[GroupAggregate] = ()
    events: Sequence[Event] = ()


class FilterUsage(msgspec.Struct, frozen=True, kw_only=True):
    """One bucket of a charge with filters; ``values`` is ``None`` for the default bucket."""

    filter_id: str | None
    values: FilterValues | None
    invoice_display_name: str | None
    units: Decimal
    total_aggregated_units: Decimal
    events_count: int
    amount_cents: int
    amount: Decimal


class ChargeUsage(msgspec.Struct, frozen=True, kw_only=True):
    """A charge's usage: sums over its buckets (``amount`` is unrounded)."""

    charge: Charge
    metric: BillableMetric
    units: Decimal
    total_aggregated_units: Decimal
    events_count: int
    amount_cents: int
    amount: Decimal
    amount_currency: str
    filters: tuple[FilterUsage, ...]


class CustomerUsage(msgspec.Struct, frozen=True, kw_only=True):
    """A subscription's current usage (Lago's ``customer_usage``), taxes not applied."""

    from_datetime: datetime
    to_datetime: datetime
    issuing_date: date
    currency: str
    amount_cents: int
    total_amount_cents: int
    charges_usage: tuple[ChargeUsage, ...]
    taxes_amount_cents: int = 0


def _bucket_properties(charge: Charge) -> list[Mapping[str, object]]:
    return [charge.properties, *(f.properties for f in charge.filters)]


def input_kind(metric: BillableMetric, charge: Charge, *, premium: bool) -> InputKind:
    """Whether the charge can be priced from grouped aggregates or needs each event.

    Besides the per-event aggregations, a percentage charge over ``sum_agg`` needs the event
    values for its free units (running totals) or per-transaction bounds, and over ``max_agg``
    for its per-transaction bounds.
    """
    kind = metric.aggregation_type
    if kind in _PER_EVENT:
        return InputKind.EVENTS
    if charge.charge_model is ChargeModel.PERCENTAGE and kind in (_T.SUM, _T.MAX):
        for props in _bucket_properties(charge):
            typed = PercentageProperties.read(props)
            if typed.priced_per_event(premium) or (kind is _T.SUM and typed.has_free_units):
                return InputKind.EVENTS
    return InputKind.GROUPS


def charge_query(
    *,
    external_subscription_id: str,
    metric: BillableMetric,
    charge: Charge,
    period: BillingPeriod,
    premium: bool,
    matchers: BucketMatchers | None = None,
) -> ChargeQuery:
    """The store query of one charge for the period (``matchers``: reuse compiled buckets)."""
    recurring = metric.recurring and metric.aggregation_type in _RECURRING_CAPABLE
    query = AggregateQuery(
        external_subscription_id=external_subscription_id,
        code=metric.code,
        # Recurring metrics carry every earlier event of the subscription over.
        from_ts=None if recurring else period.from_datetime,
        to_ts=period.to_datetime,
        field_name=metric.field_name,
        group_keys=_matcher(matchers, metric, charge).keys,
    )
    return ChargeQuery(
        charge_id=charge.id, kind=input_kind(metric, charge, premium=premium), query=query
    )


def _matcher(
    matchers: BucketMatchers | None, metric: BillableMetric, charge: Charge
) -> BucketMatcher:
    if matchers is None:
        return compile_buckets(metric, charge)
    return matchers.get(metric, charge)


def _metric(metrics: Mapping[str, BillableMetric], charge: Charge) -> BillableMetric:
    try:
        return metrics[charge.billable_metric_id]
    except KeyError:
        raise NotFound("billable_metric", "billable_metrics_not_found") from None


def usage_queries(
    *,
    external_subscription_id: str,
    plan: Plan,
    metrics: Mapping[str, BillableMetric],
    period: BillingPeriod,
    premium: bool,
    matchers: BucketMatchers | None = None,
) -> list[ChargeQuery]:
    """The store query of every charge of ``plan`` (``metrics`` keyed by metric id)."""
    return [
        charge_query(
            external_subscription_id=external_subscription_id,
            metric=_metric(metrics, charge),
            charge=charge,
            period=period,
            premium=premium,
            matchers=matchers,
        )
        for charge in plan.charges
    ]


def _percentage_extras(
    metric: BillableMetric,
    props: Mapping[str, object],
    base: agg.Aggregation,
    *,
    running_values: Sequence[Decimal],
    period_values: Sequence[Decimal],
    period_events: int,
    premium: bool,
) -> agg.Aggregation:
    """Add the running totals and per-event values the percentage model reads.

    Running totals follow the aggregation's own bounds (all history when recurring); the
    per-event values only cover the period (Lago's ``force_from``).
    """
    typed = PercentageProperties.read(props)
    fpe, fpt = typed.free_units_per_events, typed.free_units_per_total_aggregation
    kind = metric.aggregation_type
    running = agg.RunningTotal()
    if kind is _T.SUM:
        running = agg.sum_running_total(running_values, fpe, fpt)
    elif kind in (_T.COUNT, _T.UNIQUE_COUNT):
        running = agg.count_running_total(base.units, fpe, fpt)
    event_values: tuple[Decimal, ...] | None = None
    if typed.priced_per_event(premium):
        if kind in (_T.COUNT, _T.UNIQUE_COUNT):
            event_values = agg.ones(period_events)
        elif kind is _T.SUM:
            event_values = tuple(period_values)
        elif kind is _T.MAX:
            event_values = agg.max_event_values(period_values)
    return msgspec.structs.replace(base, running_total=running, event_values=event_values)


def _from_groups(
    metric: BillableMetric,
    charge: Charge,
    props: Mapping[str, object],
    rows: Sequence[GroupAggregate],
    premium: bool,
) -> agg.Aggregation:
    kind = metric.aggregation_type
    if kind is _T.COUNT:
        base = agg.count_from_groups(rows)
    elif kind is _T.SUM:
        base = agg.sum_from_groups(rows)
    else:
        base = agg.max_from_groups(rows)
    if charge.charge_model is not ChargeModel.PERCENTAGE:
        return base
    # input_kind() sends sum / max charges that need event values to the EVENTS path.
    return _percentage_extras(
        metric,
        props,
        base,
        running_values=(),
        period_values=(),
        period_events=base.events_count,
        premium=premium,
    )


def _from_events(
    metric: BillableMetric,
    charge: Charge,
    props: Mapping[str, object],
    events: Sequence[Event],
    period: BillingPeriod,
    premium: bool,
) -> agg.Aggregation:
    kind, field = metric.aggregation_type, metric.field_name
    start, end = period.from_datetime, period.to_datetime
    in_period = [e for e in events if start <= e.timestamp <= end]
    # Recurring sum / unique_count count every earlier event; weighted_sum sorts them itself.
    scope = events if metric.recurring and kind in (_T.SUM, _T.UNIQUE_COUNT) else in_period
    if kind is _T.COUNT:
        base = agg.count_from_events(scope)
    elif kind is _T.SUM:
        base = agg.sum_from_events(scope, field)
    elif kind is _T.MAX:
        base = agg.max_from_events(scope, field)
    elif kind is _T.LATEST:
        base = agg.latest_from_events(scope, field)
    elif kind is _T.UNIQUE_COUNT:
        base = agg.unique_count_from_events(scope, field)
    else:
        base = agg.weighted_sum_from_events(
            events,
            field,
            from_datetime=start,
            to_datetime=end,
            duration_days=period.duration_days,
            recurring=metric.recurring,
        )
    if charge.charge_model is not ChargeModel.PERCENTAGE:
        return base
    valued = kind in (_T.SUM, _T.MAX)
    return _percentage_extras(
        metric,
        props,
        base,
        running_values=agg.numeric_values(scope, field) if kind is _T.SUM else (),
        period_values=agg.numeric_values(in_period, field) if valued else (),
        period_events=len(in_period),
        premium=premium,
    )


def _split(
    matcher: BucketMatcher, kind: InputKind, data: ChargeData
) -> dict[BucketId, tuple[list[GroupAggregate], list[Event]]]:
    """Each bucket's share of the charge's data (an event may count in several buckets)."""
    shares: dict[BucketId, tuple[list[GroupAggregate], list[Event]]] = {
        bucket_id: ([], []) for bucket_id in matcher.bucket_ids
    }
    if kind is InputKind.GROUPS:
        for row in data.groups:
            for bucket_id in matcher.buckets_for_row(row.values):
                shares[bucket_id][0].append(row)
    else:
        for event in sorted(data.events, key=agg.event_order):
            for bucket_id in matcher.buckets_for_event(event):
                shares[bucket_id][1].append(event)
    return shares


def _fee(
    bucket: Bucket,
    charge: Charge,
    metric: BillableMetric,
    aggregation: agg.Aggregation,
    currency: str,
    premium: bool,
) -> FilterUsage:
    props = bucket.filter.properties if bucket.filter is not None else charge.properties
    units = round_metric_units(metric, aggregation.units)
    amount = charge_amount(charge.charge_model, props, units, aggregation, premium=premium)
    if units < 0 or amount < 0:
        # Lago never bills negative usage: the fee keeps its events but 0 units and 0 amount.
        units, amount = _ZERO, _ZERO
    total_aggregated = aggregation.total_aggregated_units
    return FilterUsage(
        filter_id=bucket.id,
        values=dict(bucket.filter.values) if bucket.filter is not None else None,
        invoice_display_name=bucket.filter.invoice_display_name if bucket.filter else None,
        units=units,
        total_aggregated_units=units if total_aggregated is None else total_aggregated,
        events_count=aggregation.events_count,
        amount_cents=amount_to_cents(amount, currency),
        amount=amount,
    )


def charge_usage(
    charge: Charge,
    metric: BillableMetric,
    data: ChargeData,
    *,
    period: BillingPeriod,
    currency: str,
    premium: bool,
    matchers: BucketMatchers | None = None,
) -> ChargeUsage:
    """One charge's usage: a fee per bucket, summed (cents rounded per bucket first).

    ``data`` answers the charge's :func:`charge_query`: ``groups`` when its kind is
    :attr:`InputKind.GROUPS` (values in the query's ``group_keys`` order), else ``events``.
    """
    matcher = _matcher(matchers, metric, charge)
    kind = input_kind(metric, charge, premium=premium)
    shares = _split(matcher, kind, data)
    fees: list[FilterUsage] = []
    for bucket in matcher.buckets:
        props = bucket.filter.properties if bucket.filter is not None else charge.properties
        rows, events = shares[bucket.id]
        if kind is InputKind.GROUPS:
            aggregation = _from_groups(metric, charge, props, rows, premium)
        else:
            aggregation = _from_events(metric, charge, props, events, period, premium)
        fees.append(_fee(bucket, charge, metric, aggregation, currency, premium))
    with exact():
        units = sum((fee.units for fee in fees), _ZERO)
        total_aggregated = sum((fee.total_aggregated_units for fee in fees), _ZERO)
        amount = sum((fee.amount for fee in fees), _ZERO)
    return ChargeUsage(
        charge=charge,
        metric=metric,
        units=units,
        total_aggregated_units=total_aggregated,
        events_count=sum(fee.events_count for fee in fees),
        amount_cents=sum(fee.amount_cents for fee in fees),
        amount=amount,
        amount_currency=currency,
        filters=tuple(fees) if charge.filters else (),
    )


def customer_usage(
    *,
    period: BillingPeriod,
    plan: Plan,
    metrics: Mapping[str, BillableMetric],
    data: Mapping[str, ChargeData],
    premium: bool,
    matchers: BucketMatchers | None = None,
) -> CustomerUsage:
    """The current usage of a subscription to ``plan`` over ``period``.

    ``metrics`` maps metric ids to metrics; ``data`` maps charge ids to the answers of
    :func:`usage_queries` (a missing charge counts as no usage).
    """
    currency = plan.amount_currency
    charges = [
        charge_usage(
            charge,
            _metric(metrics, charge),
            data.get(charge.id, ChargeData()),
            period=period,
            currency=currency,
            premium=premium,
            matchers=matchers,
        )
        for charge in plan.charges
    ]
    charges.sort(key=lambda usage: usage.metric.name.lower())
    amount_cents = sum(usage.amount_cents for usage in charges)
    return CustomerUsage(
        from_datetime=period.from_datetime,
        to_datetime=period.to_datetime,
        issuing_date=period.issuing_date,
        currency=currency,
        amount_cents=amount_cents,
        total_amount_cents=amount_cents,
        charges_usage=tuple(charges),
    )
