"""Small constructors for metering records, so tests state only what matters to them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

from metering.models import (
    AggregationType,
    BillableMetric,
    Charge,
    ChargeFilter,
    ChargeModel,
    Event,
    Interval,
    MetricFilter,
    Plan,
    RoundingFunction,
)
from metering.ports import GroupAggregate

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    """A UTC datetime."""
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def metric(
    aggregation_type: AggregationType = AggregationType.SUM,
    *,
    field_name: str | None = "tokens",
    filters: Mapping[str, Iterable[str]] | None = None,
    name: str = "LLM tokens",
    code: str = "llm_tokens",
    recurring: bool = False,
    rounding_function: RoundingFunction | None = None,
    rounding_precision: int | None = None,
) -> BillableMetric:
    """A billable metric; ``filters`` maps keys to allowed values."""
    return BillableMetric(
        id=f"bm-{code}",
        code=code,
        name=name,
        aggregation_type=aggregation_type,
        created_at=T0,
        field_name=None if aggregation_type is AggregationType.COUNT else field_name,
        recurring=recurring,
        rounding_function=rounding_function,
        rounding_precision=rounding_precision,
        filters=tuple(
            MetricFilter(key=k, values=tuple(sorted(v))) for k, v in sorted((filters or {}).items())
        ),
    )


def charge_filter(
    values: Mapping[str, Iterable[str]],
    properties: Mapping[str, Any] | None = None,
    *,
    id: str | None = None,
    created_at: datetime | None = None,
    invoice_display_name: str | None = None,
) -> ChargeFilter:
    """A charge filter (created at ``T0`` unless told otherwise)."""
    return ChargeFilter(
        id=id or f"cf-{uuid4().hex}",
        values={k: tuple(v) for k, v in values.items()},
        properties=dict(properties or {"amount": "0"}),
        created_at=created_at or T0,
        invoice_display_name=invoice_display_name,
    )


def charge(
    bm: BillableMetric,
    model: ChargeModel = ChargeModel.STANDARD,
    properties: Mapping[str, Any] | None = None,
    *,
    filters: Iterable[ChargeFilter] = (),
    id: str | None = None,
) -> Charge:
    """A charge on ``bm``."""
    return Charge(
        id=id or f"ch-{uuid4().hex}",
        code=bm.code,
        billable_metric_id=bm.id,
        charge_model=model,
        properties=dict(properties or {"amount": "0"}),
        created_at=T0,
        filters=tuple(filters),
    )


def plan(*charges: Charge, currency: str = "USD", interval: Interval = Interval.MONTHLY) -> Plan:
    """A plan holding ``charges``."""
    return Plan(
        id="plan-1",
        code="plan",
        name="Plan",
        interval=interval,
        amount_cents=0,
        amount_currency=currency,
        created_at=T0,
        charges=charges,
    )


def event(
    properties: Mapping[str, Any] | None = None,
    *,
    at: datetime | None = None,
    created_at: datetime | None = None,
    sub: str = "sub-1",
    code: str = "llm_tokens",
) -> Event:
    """An event (at ``T0`` unless told otherwise)."""
    timestamp = at or T0
    return Event(
        id=f"ev-{uuid4().hex}",
        transaction_id=f"tx-{uuid4().hex}",
        external_subscription_id=sub,
        code=code,
        timestamp=timestamp,
        properties=dict(properties or {}),
        created_at=created_at or timestamp,
    )


def group(
    values: tuple[str | None, ...] = (),
    *,
    events: int,
    total: str | int = 0,
    maximum: str | int | None = None,
    numeric_events: int | None = None,
) -> GroupAggregate:
    """A store aggregate row."""
    return GroupAggregate(
        values=values,
        events=events,
        numeric_events=events if numeric_events is None else numeric_events,
        total=Decimal(total),
        maximum=None if maximum is None else Decimal(maximum),
    )


def groups_from_events(
    events: Iterable[Event], keys: tuple[str, ...], field_name: str | None
) -> list[GroupAggregate]:
    """What a correct store answers for these events, grouped by ``keys``."""
    from metering.values import numeric_value, property_text

    folded: dict[tuple[str | None, ...], list[Any]] = {}
    for ev in events:
        row_key = tuple(property_text(ev.properties.get(k)) for k in keys)
        fold = folded.setdefault(row_key, [0, 0, Decimal(0), None])
        fold[0] += 1
        value = numeric_value(ev.properties.get(field_name)) if field_name else None
        if value is not None:
            fold[1] += 1
            fold[2] += value
            fold[3] = value if fold[3] is None else max(fold[3], value)
    return [
        GroupAggregate(values=k, events=e, numeric_events=n, total=t, maximum=m)
        for k, (e, n, t, m) in folded.items()
    ]
