"""Record and event builders for the store contract suite (plain values, sensible defaults)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from metering.models import (
    AggregationType,
    ApiKey,
    BillableMetric,
    BillingTime,
    Charge,
    ChargeFilter,
    ChargeModel,
    Customer,
    Event,
    Interval,
    MetricFilter,
    Plan,
    Subscription,
    SubscriptionStatus,
)

T0 = datetime(2025, 6, 1, tzinfo=UTC)
CODE = "llm_tokens"
SUB = "sub_1"


def ids(prefix: str) -> Iterator[str]:
    """prefix-1, prefix-2, ... (deterministic ids keep failures readable)."""
    return (f"{prefix}-{n}" for n in itertools.count(1))


def metric(
    code: str = CODE,
    *,
    id: str | None = None,
    field_name: str | None = "tokens",
    filters: Mapping[str, Sequence[str]] | None = None,
    created_at: datetime = T0,
    name: str | None = None,
    aggregation: AggregationType = AggregationType.SUM,
) -> BillableMetric:
    """A billable metric; filters default to the seed's model/type."""
    if filters is None:
        filters = {"model": ["gpt-4o", "gpt-4o-mini"], "type": ["input", "output"]}
    return BillableMetric(
        id=id or f"bm-{code}",
        code=code,
        name=name or code.replace("_", " "),
        aggregation_type=aggregation,
        field_name=field_name,
        created_at=created_at,
        filters=tuple(MetricFilter(key=k, values=tuple(sorted(v))) for k, v in filters.items()),
    )


def plan(
    code: str = "pro",
    *,
    id: str | None = None,
    metric_id: str = "bm-llm_tokens",
    created_at: datetime = T0,
) -> Plan:
    """A monthly plan with one package charge and one charge filter."""
    charge = Charge(
        id=f"ch-{code}",
        code=CODE,
        billable_metric_id=metric_id,
        charge_model=ChargeModel.PACKAGE,
        properties={"amount": "0", "package_size": 1000, "free_units": 0},
        created_at=created_at,
        filters=(
            ChargeFilter(
                id=f"cf-{code}",
                values={"model": ("gpt-4o",), "type": ("input",)},
                properties={"amount": "0.0025", "package_size": 1000, "free_units": 0},
                created_at=created_at,
                invoice_display_name="4o input",
            ),
        ),
    )
    return Plan(
        id=id or f"plan-{code}",
        code=code,
        name=code.title(),
        interval=Interval.MONTHLY,
        amount_cents=1000,
        amount_currency="USD",
        created_at=created_at,
        trial_period=Decimal("1.5"),
        charges=(charge,),
    )


def customer(
    external_id: str = "cus_1", *, id: str | None = None, created_at: datetime = T0
) -> Customer:
    """A customer in Paris time."""
    return Customer(
        id=id or f"c-{external_id}",
        external_id=external_id,
        created_at=created_at,
        updated_at=created_at,
        name="Ada",
        timezone="Europe/Paris",
        currency="EUR",
    )


def subscription(
    external_id: str = SUB,
    *,
    id: str | None = None,
    external_customer_id: str = "cus_1",
    plan_code: str = "pro",
    status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    created_at: datetime = T0,
) -> Subscription:
    """An active calendar subscription."""
    return Subscription(
        id=id or f"s-{external_id}",
        external_id=external_id,
        customer_id=f"c-{external_customer_id}",
        external_customer_id=external_customer_id,
        plan_id=f"plan-{plan_code}",
        plan_code=plan_code,
        status=status,
        billing_time=BillingTime.CALENDAR,
        subscription_at=created_at,
        started_at=created_at,
        created_at=created_at,
    )


def api_key(id: str = "key-1", *, key_hash: str | None = None, created_at: datetime = T0) -> ApiKey:
    """An active key bound to cus_1 / sub_1."""
    return ApiKey(
        id=id,
        prefix="tg-abcd",
        key_hash=key_hash or f"hash-{id}",
        external_customer_id="cus_1",
        external_subscription_id=SUB,
        created_at=created_at,
        name=f"key {id}",
    )


def event(
    transaction_id: str,
    *,
    sub: str = SUB,
    code: str = CODE,
    ts: datetime = T0,
    properties: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
) -> Event:
    """One event; properties default to 10 gpt-4o input tokens."""
    if properties is None:
        properties = {"model": "gpt-4o", "type": "input", "tokens": 10}
    return Event(
        id=f"ev-{sub}-{transaction_id}",
        transaction_id=transaction_id,
        external_subscription_id=sub,
        code=code,
        timestamp=ts,
        properties=dict(properties),
        created_at=created_at or ts,
    )


def at(**delta: float) -> datetime:
    """T0 shifted by a timedelta (``at(hours=2, microseconds=-1)``)."""
    return T0 + timedelta(**delta)
